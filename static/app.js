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
// While a page is visible, the events stream (Server-Sent Events; its URL, with any path prefix,
// is in a meta tag) says when anything changed: the fragments then refresh at once and their
// timers stand down. Without the stream (refused, broken, a proxy that buffers) the timers keep
// polling. A hidden page neither streams nor polls, so a tab left in the background costs nothing.
//
// A browser opens at most 6 connections to a host, and a stream holds one, so the panel's tabs
// share a single stream: the visible tab holding the Web Lock "lexyjobs-events <url>" streams and
// passes what it hears to the other tabs over a BroadcastChannel of the same name. A leader that
// is hidden or closed lets the lock go, and the next visible tab waiting for it takes over; with
// no tab visible, no stream is open. Without Web Locks (plain http:// other than localhost has
// none) or BroadcastChannel, each visible tab streams for itself.
var lexyjobsStream = null;   // this tab's EventSource (the leader's, or any visible tab's without sharing)
var lexyjobsLive = false;    // a stream (this tab's or the leader's) is live: the timers stand down
var lexyjobsShare = null;    // {name, channel} when the tabs share one stream
var lexyjobsLead = null;     // while this tab holds the lock: the function that lets it go
var lexyjobsQueued = null;   // while this tab waits for the lock: the AbortController that withdraws

var lexyjobsMissed = {};     // ids of fragments told to refresh when they could not: they refresh once they can

// A polled fragment refreshes by its own GET ("a poll"). Left to itself, htmx gets three things wrong:
// 1. A refresh told while the fragment's poll is in flight is queued by htmx on that element; when
//    the answer (the older state) replaces the element, htmx drops the queued request with it. So
//    the id is noted as missed, and the element that replaced it refreshes once htmx has loaded it.
// 2. A request aimed at the fragment from outside it (a filter, a pager link, a bulk action) has its
//    target fixed when sent; a poll answered meanwhile would replace the element, and the request's
//    answer would find nowhere to land (a filter silently not applied, "Retried 3 runs" never shown).
//    While such a request is out, polls wait (noted as missed) and a poll's answer is dropped (it
//    was sent before the request, so the request's answer is newer).
// 3. What an action said (a .flash at the top of the fragment) is shown once, so polls answer
//    without it, and the refreshes the action itself causes would take it away within a second. A
//    poll's answer keeps the message it replaces; the answer to anything else brings its own or none.
function lexyjobsRefresh() {
  document.querySelectorAll("[data-poll]").forEach(function (el) {
    if (el.id && el.lexyjobsBusy) { lexyjobsMissed[el.id] = true; }
    htmx.trigger(el, "lexyjobs:poll");
  });
}
function lexyjobsPolled(el) { return Boolean(el && el.hasAttribute && el.hasAttribute("data-poll")); }
document.addEventListener("htmx:beforeSend", function (event) {
  var elt = event.detail.elt, target = event.detail.target;
  if (lexyjobsPolled(elt)) {
    elt.lexyjobsBusy = true;
    event.detail.xhr.lexyjobsPoll = true;  // htmx:beforeSwap names the target, not who asked
  } else if (lexyjobsPolled(target)) {
    event.detail.xhr.lexyjobsAimedAt = target;
    target.lexyjobsOutside = (target.lexyjobsOutside || 0) + 1;
  }
});
document.addEventListener("htmx:beforeSwap", function (event) {
  var el = event.detail.elt, xhr = event.detail.xhr;
  if (!xhr.lexyjobsPoll || !event.detail.shouldSwap) { return; }
  if (el.lexyjobsOutside || !document.body.contains(el)) {  // 2
    event.detail.shouldSwap = false;
    xhr.lexyjobsDropped = true;
    return;
  }
  var message = el.querySelector(":scope > .flash");  // 3: into the answer, so it never blinks
  if (!message) { return; }
  var answer = document.createElement("template");
  answer.innerHTML = event.detail.serverResponse;
  var root = answer.content.firstElementChild;
  if (root && root.id === el.id && !root.querySelector(":scope > .flash")) {
    root.prepend(message.cloneNode(true));
    event.detail.serverResponse = answer.innerHTML;
  }
});
document.addEventListener("htmx:afterRequest", function (event) {
  var el = event.detail.elt, xhr = event.detail.xhr || {}, aimed = xhr.lexyjobsAimedAt;
  el.lexyjobsBusy = false;
  if (xhr.lexyjobsPoll && !xhr.lexyjobsDropped && el.id && document.body.contains(el)) {
    delete lexyjobsMissed[el.id];  // 1: not replaced, so htmx sends the queued one itself
  }
  if (!aimed) { return; }
  aimed.lexyjobsOutside -= 1;
  if (!aimed.lexyjobsOutside && aimed.id && lexyjobsMissed[aimed.id] && document.body.contains(aimed)) {
    delete lexyjobsMissed[aimed.id];  // 2: its answer did not replace it (a 204, an error)
    htmx.trigger(aimed, "lexyjobs:poll");
  }
});
document.addEventListener("htmx:load", function (event) {
  var el = event.detail.elt;
  if (!el.id || !lexyjobsPolled(el)) { return; }
  if (lexyjobsMissed[el.id]) {  // 1, 2
    delete lexyjobsMissed[el.id];
    htmx.trigger(el, "lexyjobs:poll");
  }
});
function lexyjobsEventsURL() {
  var meta = document.querySelector('meta[name="lexyjobs-events"]');
  if (!window.EventSource || !meta || !document.querySelector("[data-poll]")) { return null; }
  return new URL(meta.content, location.href).href;
}
function lexyjobsTell(message) {
  if (lexyjobsShare) { lexyjobsShare.channel.postMessage(message); }
}
function lexyjobsOpen(url) {
  lexyjobsStream = new EventSource(url);
  lexyjobsStream.onopen = function () {  // every tab catches up once: changes made while no stream was open
    lexyjobsLive = true;
    lexyjobsTell({live: true, opened: true});
    lexyjobsRefresh();
  };
  lexyjobsStream.onerror = function () { lexyjobsLive = false; lexyjobsTell({live: false}); };
  lexyjobsStream.addEventListener("activity", function () { lexyjobsTell({activity: true}); lexyjobsRefresh(); });
}
function lexyjobsConnect() {
  var url = lexyjobsEventsURL();
  if (!url || document.hidden || lexyjobsStream || lexyjobsLead || lexyjobsQueued) { return; }
  if (!lexyjobsShare) { lexyjobsOpen(url); return; }
  var queued = lexyjobsQueued = new AbortController();
  navigator.locks.request(lexyjobsShare.name, {signal: queued.signal}, function () {
    lexyjobsQueued = null;
    return new Promise(function (letGo) {  // the lock is held until letGo() or the tab is gone
      lexyjobsLead = letGo;
      if (document.hidden) { lexyjobsDisconnect(); } else { lexyjobsOpen(url); }
    });
  }).catch(function () {});  // withdrawn: the tab was hidden before its turn came
}
function lexyjobsDisconnect() {
  if (lexyjobsQueued) { lexyjobsQueued.abort(); lexyjobsQueued = null; }
  if (lexyjobsStream) { lexyjobsStream.close(); lexyjobsTell({live: false}); }
  lexyjobsStream = null;
  lexyjobsLive = false;
  if (lexyjobsLead) { var letGo = lexyjobsLead; lexyjobsLead = null; letGo(); }
}
function lexyjobsHear(event) {  // a follower: what the leader tab passes on
  var message = event.data || {};
  if (message.hello) {  // a tab just came into view and asks whether the stream is live
    if (lexyjobsStream) { lexyjobsTell({live: lexyjobsLive}); }
    return;
  }
  if (lexyjobsStream || document.hidden) { return; }
  if (typeof message.live === "boolean") { lexyjobsLive = message.live; }
  if (message.activity || message.opened) { lexyjobsRefresh(); }
}
// A fragment whose poll URL names a time (due=, see lexyjobs.panel.htmx.due_args) shows something
// that changes then with nothing written to tell the stream: a delayed run comes due, a running
// run turns too long. Its timer polls once that time has come, stream or not.
function lexyjobsDue(el) {
  var due = new URL(el.getAttribute("hx-get"), location.href).searchParams.get("due");
  return due !== null && Date.parse(due) <= Date.now();
}
document.addEventListener("htmx:beforeRequest", function (event) {
  if (!event.detail.elt.hasAttribute("data-poll")) { return; }
  if (event.detail.elt.lexyjobsOutside) {  // 2: a request from outside is out
    if (event.detail.elt.id) { lexyjobsMissed[event.detail.elt.id] = true; }
    event.preventDefault();
    return;
  }
  var trigger = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
  var pushed = trigger && trigger.type === "lexyjobs:poll";
  var own = event.detail.elt.getAttribute("data-poll") === "self";  // e.g. the log tail: not in the feed
  if (document.hidden || (lexyjobsLive && !pushed && !own && !lexyjobsDue(event.detail.elt))) { event.preventDefault(); }
});
document.addEventListener("visibilitychange", function () {
  if (document.hidden) { lexyjobsDisconnect(); return; }
  lexyjobsTell({hello: true});
  lexyjobsConnect();
  lexyjobsRefresh();
});
window.addEventListener("pagehide", lexyjobsDisconnect);
window.addEventListener("pageshow", function (event) { if (event.persisted) { lexyjobsConnect(); } });
if (navigator.locks && window.BroadcastChannel && lexyjobsEventsURL()) {
  lexyjobsShare = {name: "lexyjobs-events " + lexyjobsEventsURL()};
  lexyjobsShare.channel = new BroadcastChannel(lexyjobsShare.name);
  lexyjobsShare.channel.onmessage = lexyjobsHear;
  if (!document.hidden) { lexyjobsTell({hello: true}); }
}
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

// An alert target form (select[data-kind-switch]) shows only the fields of the chosen kind
// (elements with data-kinds="webhook slack"); without this script every field shows.
function lexyjobsKindFields(select) {
  select.form.querySelectorAll("[data-kinds]").forEach(function (el) {
    el.hidden = el.getAttribute("data-kinds").split(" ").indexOf(select.value) < 0;
  });
}
document.querySelectorAll("select[data-kind-switch]").forEach(lexyjobsKindFields);
document.addEventListener("change", function (event) {
  if (event.target.matches && event.target.matches("select[data-kind-switch]")) { lexyjobsKindFields(event.target); }
});

// ---- Runs list density and run toasts (issue 17: B10, B11) ----
// "Compact rows" (a button with data-density-toggle="<selector of the list>") is remembered in
// localStorage and mirrored in a cookie, so the server renders the list compact from the start:
// no flash of the roomy rows on a reload, and the list's live refreshes keep it.
var LEXYJOBS_DENSITY = "lexyjobs.density";
function lexyjobsDensity(value) {
  document.cookie = "lexyjobs_density=" + (value || "comfortable") + "; path=/; max-age=31536000; SameSite=Lax";
  document.querySelectorAll("[data-density-toggle]").forEach(function (button) {
    var list = document.querySelector(button.getAttribute("data-density-toggle"));
    if (list && value) { list.setAttribute("data-density", value); } else if (list) { list.removeAttribute("data-density"); }
    button.setAttribute("aria-pressed", value ? "true" : "false");
    button.hidden = false;
  });
}
if (document.querySelector("[data-density-toggle]")) {
  var lexyjobsStored = "";
  try { lexyjobsStored = localStorage.getItem(LEXYJOBS_DENSITY) === "compact" ? "compact" : ""; } catch (e) { /* storage off */ }
  lexyjobsDensity(lexyjobsStored);
}
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("[data-density-toggle]");
  if (!button) { return; }
  var value = button.getAttribute("aria-pressed") === "true" ? "" : "compact";
  try { localStorage.setItem(LEXYJOBS_DENSITY, value); } catch (e) { /* storage off: this page only */ }
  lexyjobsDensity(value);
});
// A one-click run answers with a toast for the page's toast area (data-toasts), a refusal (4xx)
// too: htmx swaps only 2xx answers by default, and the refusal's words belong in the toast. A
// refusal made before the run's code (an expired form: JSON) becomes a toast of its message.
document.addEventListener("htmx:beforeSwap", function (event) {
  var target = event.detail.target;
  var xhr = event.detail.xhr;
  if (!target || !target.hasAttribute || !target.hasAttribute("data-toasts") || xhr.status < 400 || xhr.status >= 500) { return; }
  if (xhr.getResponseHeader("X-Lexyjobs-Toast")) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
    return;
  }
  var message = null;
  try { message = JSON.parse(xhr.responseText).error.message; } catch (e) { return; }
  event.detail.isError = false;  // shown here: not an htmx error
  var toast = document.createElement("div");
  toast.className = "toast refused";
  toast.setAttribute("role", "status");
  var text = document.createElement("p");
  text.textContent = message.charAt(0).toUpperCase() + message.slice(1) + ".";
  var close = document.createElement("button");
  close.type = "button";
  close.setAttribute("data-dismiss", "");
  close.setAttribute("aria-label", "Dismiss this message");
  close.textContent = "×";
  toast.appendChild(text);
  toast.appendChild(close);
  target.prepend(toast);
});
// The toast area keeps the newest three (the Run buttons it answers are on the other side).
document.addEventListener("htmx:afterSwap", function (event) {
  var area = event.detail.target;
  if (!area || !area.hasAttribute || !area.hasAttribute("data-toasts")) { return; }
  Array.from(area.querySelectorAll(".toast")).slice(3).forEach(function (old) { old.remove(); });
});
// A toast's close button (data-dismiss) removes its toast.
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("button[data-dismiss]");
  var toast = button && button.closest(".toast");
  if (toast) { toast.remove(); }
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
