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
    showRecord();
  });

  function duration(seconds) {
    var s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }

  // The final duration and summary, which were unknown when the page was rendered.
  function showRecord() {
    fetch(log.dataset.record, { headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (job) {
        if (!job) return;
        if (job.duration) document.getElementById("job-duration").textContent = duration(parseFloat(job.duration));
        if (job.summary) {
          document.getElementById("job-summary").textContent = job.summary;
          document.getElementById("job-summary-row").hidden = false;
        }
      })
      .catch(function () { /* the page still shows the log; a reload shows the rest */ });
  }

  source.onerror = function () {
    // CLOSED: refused outright (e.g. 503, too many live logs open); a reload shows the new lines.
    var closed = source.readyState === EventSource.CLOSED;
    if (live) live.textContent = closed ? "not live (server busy): reload for new lines" : "reconnecting…";
  };
  source.onopen = function () {
    if (live) live.textContent = "● live";
  };
})();
