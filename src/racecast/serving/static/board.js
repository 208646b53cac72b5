// racecast race-day board: countdowns, and a reload when the day changes (a result pushed,
// a racecard replaced). Plain JS, no build step; every number comes from the server.
(function () {
  "use strict";

  function countdown(ms) {
    var s = Math.floor(ms / 1000);
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var sec = s % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return "in " + (h > 0 ? h + "h " : "") + pad(m) + "m " + pad(sec) + "s";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-off]").forEach(function (el) {
      var ms = Date.parse(el.getAttribute("data-off")) - now;
      el.textContent = ms > 0 ? countdown(ms) : "";
      if (ms <= 0) {
        var row = el.closest("tr") || document;
        var state = row.querySelector("[data-state='upcoming']");
        if (state) {
          state.setAttribute("data-state", "off");
          state.textContent = "off";
        }
      }
    });
  }

  function poll(url, version, every) {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.assign("/login");
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (status) {
        if (status && status.version && status.version !== version) {
          window.location.reload();
          return;
        }
        window.setTimeout(function () { poll(url, version, every); }, every);
      })
      .catch(function () {
        window.setTimeout(function () { poll(url, version, every); }, every);
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    window.setInterval(tick, 1000);
    var body = document.body;
    var url = body.getAttribute("data-status-url");
    if (url) {
      var every = Number(body.getAttribute("data-poll-ms")) || 5000;
      window.setTimeout(function () { poll(url, body.getAttribute("data-version"), every); }, every);
    }
  });
})();
