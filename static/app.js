// lexyjobs panel glue (our own, no dependencies besides htmx).
// Every htmx request carries the CSRF token from <meta name="csrf-token">.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { event.detail.headers["X-CSRF-Token"] = meta.content; }
});

// A filter form (data-drop-empty) leaves its blank fields out, so the address bar reads
// /runs?status=failed rather than /runs?status=failed&job=&category=&q=&since=&until=.
document.addEventListener("htmx:configRequest", function (event) {
  if (!event.detail.elt.closest || !event.detail.elt.closest("[data-drop-empty]")) { return; }
  var data = event.detail.formData;
  Array.from(data.keys()).forEach(function (key) {
    if (data.getAll(key).every(function (value) { return value === ""; })) { data.delete(key); }
  });
});

// Live updates. Polled fragments (data-poll) refresh on "lexyjobs:poll" and on a 2 s timer.
// While the page is visible, the events stream (Server-Sent Events; its URL is in a meta tag) says when anything changed: the
// fragments then refresh at once and their timers stand down. Without the stream (refused,
// broken, a proxy that buffers) the timers keep polling. A hidden page neither streams nor polls,
// so a dashboard left open in a background tab costs nothing.
var lexyjobsStream = null;
var lexyjobsLive = false;

function lexyjobsRefresh() {
  document.querySelectorAll("[data-poll]").forEach(function (el) { htmx.trigger(el, "lexyjobs:poll"); });
}
function lexyjobsConnect() {
  var meta = document.querySelector('meta[name="lexyjobs-events"]');
  if (lexyjobsStream || !window.EventSource || !meta || !document.querySelector("[data-poll]")) { return; }
  lexyjobsStream = new EventSource(meta.content);  // the URL comes from the page: it carries any path prefix
  lexyjobsStream.onopen = function () { lexyjobsLive = true; lexyjobsRefresh(); };  // catch up once
  lexyjobsStream.onerror = function () { lexyjobsLive = false; };
  lexyjobsStream.addEventListener("activity", lexyjobsRefresh);
}
function lexyjobsDisconnect() {
  if (lexyjobsStream) { lexyjobsStream.close(); }
  lexyjobsStream = null;
  lexyjobsLive = false;
}
document.addEventListener("htmx:beforeRequest", function (event) {
  if (!event.detail.elt.hasAttribute("data-poll")) { return; }
  var trigger = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
  var pushed = trigger && trigger.type === "lexyjobs:poll";
  var own = event.detail.elt.getAttribute("data-poll") === "self";  // e.g. the log tail: not in the feed
  if (document.hidden || (lexyjobsLive && !pushed && !own)) { event.preventDefault(); }
});
document.addEventListener("visibilitychange", function () {
  if (document.hidden) { lexyjobsDisconnect(); return; }
  lexyjobsConnect();
  lexyjobsRefresh();
});
window.addEventListener("pagehide", lexyjobsDisconnect);
lexyjobsConnect();

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

// A copy button (data-copy="<input id>", hidden until this script shows it) copies that field's value.
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  if (navigator.clipboard) { button.hidden = false; }
});
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("button[data-copy]");
  var field = button && document.getElementById(button.getAttribute("data-copy"));
  if (!field) { return; }
  navigator.clipboard.writeText(field.value).then(function () { button.textContent = "Copied"; });
});

// A sideways-scrolling chart (data-keep-scroll, with an id) opens at its right end, where now is,
// and keeps the reader's scroll position when its poll replaces it.
var lexyjobsScroll = {};
function lexyjobsRestoreScroll(root) {
  (root.matches && root.matches("[data-keep-scroll]") ? [root] : Array.from(root.querySelectorAll("[data-keep-scroll]")))
    .forEach(function (el) {
      el.scrollLeft = el.id in lexyjobsScroll ? lexyjobsScroll[el.id] : el.scrollWidth;
    });
}
document.addEventListener("htmx:beforeSwap", function (event) {
  document.querySelectorAll("[data-keep-scroll]").forEach(function (el) {
    if (el.id) { lexyjobsScroll[el.id] = el.scrollLeft; }
  });
});
document.addEventListener("htmx:afterSettle", function (event) { lexyjobsRestoreScroll(document); });
lexyjobsRestoreScroll(document);
