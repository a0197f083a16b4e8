"""The timeline: every job a row, its runs as bars in time (``runs``: what is read, ``layout``:
the SVG geometry, ``fires``: the upcoming scheduled fires). The page is ``lexyjobs.panel.timeline``."""
