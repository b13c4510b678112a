// Live tail of a job's log over server-sent events; the page works without it.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || log.dataset.final === "true" || !window.EventSource) return;
  var live = document.getElementById("live");
  var url = log.dataset.events + "?start=" + encodeURIComponent(log.dataset.next || "0");
  var source = new EventSource(url);

  function nearBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  source.addEventListener("line", function (event) {
    var follow = nearBottom();
    var line = document.createElement("span");
    line.className = "line";
    line.textContent = JSON.parse(event.data);
    log.appendChild(line);
    log.appendChild(document.createTextNode("\n"));
    var empty = document.getElementById("log-empty");
    if (empty) empty.remove();
    if (follow) log.scrollTop = log.scrollHeight;
  });

  source.addEventListener("end", function (event) {
    source.close();
    var state = JSON.parse(event.data).state;
    var badge = document.querySelector("#job-state .badge");
    if (badge) {
      badge.textContent = state;
      badge.className = "badge state-" + state;
    }
    var cancel = document.getElementById("cancel-form");
    if (cancel) cancel.remove();
    if (live) live.textContent = "finished";
  });

  source.onerror = function () {
    if (live) live.textContent = "reconnecting…";
  };
  source.onopen = function () {
    if (live) live.textContent = "● live";
  };
})();
