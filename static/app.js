// lexyjobs panel glue (our own, no dependencies besides htmx).
// Every htmx request carries the CSRF token from <meta name="csrf-token">.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { event.detail.headers["X-CSRF-Token"] = meta.content; }
});

// Polled fragments (data-poll) pause while the page is hidden, and refresh at once when it is
// shown again, so a dashboard left open in a background tab costs nothing.
document.addEventListener("htmx:beforeRequest", function (event) {
  if (document.hidden && event.detail.elt.hasAttribute("data-poll")) { event.preventDefault(); }
});
document.addEventListener("visibilitychange", function () {
  if (document.hidden) { return; }
  document.querySelectorAll("[data-poll]").forEach(function (el) { htmx.trigger(el, "lexyjobs:poll"); });
});
