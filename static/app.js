// lexyjobs panel glue (our own, no dependencies besides htmx).
// Every htmx request carries the CSRF token from <meta name="csrf-token">.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { event.detail.headers["X-CSRF-Token"] = meta.content; }
});
