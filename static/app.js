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

// The run log (<pre data-follow>) keeps its newest lines in view as the tail appends them,
// unless the reader has scrolled up to read something older.
function lexyjobsFollowLog(log) { log.scrollTop = log.scrollHeight; }
document.querySelectorAll("pre[data-follow]").forEach(lexyjobsFollowLog);
document.addEventListener("htmx:oobBeforeSwap", function (event) {
  var log = event.detail.target;
  if (!log || !log.hasAttribute || !log.hasAttribute("data-follow")) { return; }
  if (log.scrollHeight - log.scrollTop - log.clientHeight < 40) {
    requestAnimationFrame(function () { lexyjobsFollowLog(log); });
  }
});

// A "select all" box (data-select-all="<name>") ticks or clears every checkbox of that name in its form.
document.addEventListener("change", function (event) {
  var box = event.target;
  if (!box.matches || !box.matches("input[data-select-all]") || !box.form) { return; }
  box.form.querySelectorAll('input[type="checkbox"][name="' + box.getAttribute("data-select-all") + '"]')
    .forEach(function (el) { el.checked = box.checked; });
});
