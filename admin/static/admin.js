// asyncreq admin: keeps the parts of a page marked data-live up to date
// by fetching the page again every few seconds and swapping them in. The
// page works without it; nothing here runs inline (the Content Security
// Policy allows this file only).
(function () {
  "use strict";
  var every = 3000;
  function refresh() {
    if (document.hidden || !document.querySelector("[data-live]")) {
      return;
    }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (res) {
        if (!res.ok) {
          throw new Error("status " + res.status);
        }
        return res.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var next = el.id && fresh.getElementById(el.id);
          if (next) {
            el.replaceWith(document.importNode(next, true));
          }
        });
      })
      .catch(function () { /* the next round tries again */ });
  }
  window.setInterval(refresh, every);
})();
