// Live job logs: Server-Sent Events from /{owner}/{repo}/actions/jobs/{id}/logs/stream.
(function () {
  "use strict";
  var ICONS = { success: "✓", failure: "✗", cancelled: "⊘", skipped: "⤼" };

  function stepBox(container, number, name) {
    var key = number === null ? "" : String(number);
    var box = container.querySelector('details[data-step="' + key + '"]');
    if (box) return box;
    box = document.createElement("details");
    box.className = "actions-step";
    box.open = true;
    box.setAttribute("data-step", key);
    var summary = document.createElement("summary");
    var icon = document.createElement("span");
    icon.className = "state-icon state-running";
    icon.setAttribute("data-step-icon", "");
    icon.textContent = "●";
    var label = document.createElement("span");
    label.setAttribute("data-step-name", "");
    label.textContent = " " + (name || (number === null ? "Set up job" : "Step " + (number + 1)));
    summary.appendChild(icon);
    summary.appendChild(label);
    var pre = document.createElement("pre");
    pre.className = "actions-log";
    box.appendChild(summary);
    box.appendChild(pre);
    container.insertBefore(box, container.querySelector("[data-steps-end]"));
    return box;
  }

  function start(container) {
    var url = container.getAttribute("data-stream");
    if (!url || !window.EventSource) return;
    var source = new EventSource(url);
    source.addEventListener("line", function (event) {
      var data = JSON.parse(event.data);
      var pre = stepBox(container, data.step, null).querySelector("pre");
      var span = document.createElement("span");
      span.id = "L" + event.lastEventId;
      span.textContent = data.text + "\n";
      pre.appendChild(span);
      pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("state", function (event) {
      var data = JSON.parse(event.data);
      data.steps.forEach(function (step) {
        var box = stepBox(container, step.number, step.name);
        box.querySelector("[data-step-name]").textContent = " " + step.name;
        var icon = box.querySelector("[data-step-icon]");
        if (step.status === "completed") {
          icon.textContent = ICONS[step.conclusion] || "•";
          icon.className = "state-icon state-" + (step.conclusion || "neutral");
        }
      });
      var status = container.querySelector("[data-job-status]");
      if (status) status.textContent = data.conclusion || data.status;
    });
    source.addEventListener("done", function () {
      source.close();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-job-log][data-stream]").forEach(start);
  });
})();
