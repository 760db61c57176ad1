// The interactive part of a dronewatch report: the timeline chart (one view at a time) and the
// category colours. The data comes from the report's own JSON block; nothing is fetched.
/* global DronewatchTimeline */
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var select = document.getElementById("timeline-view");
  var chart = document.getElementById("chart");
  var plot = null;

  document.querySelectorAll("[data-category]").forEach(function (node) {
    var colour = DronewatchTimeline.colour(node.getAttribute("data-category"));
    if (node.tagName.toLowerCase() === "circle") node.setAttribute("fill", colour);
    else node.style.background = colour;
  });

  function show() {
    DronewatchTimeline.destroy(plot);
    plot = null;
    var view = data.timeline[Number(select.value) || 0];
    if (!view) {
      chart.textContent = "Nothing left the devices: there is no timeline to draw.";
      return;
    }
    plot = DronewatchTimeline.draw(chart, view.data, {});
  }

  data.timeline.forEach(function (view, i) {
    var option = document.createElement("option");
    option.value = String(i);
    option.textContent = view.label;
    select.append(option);
  });
  select.addEventListener("change", show);
  document.getElementById("chart-reset").addEventListener("click", show);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", show);
  window.addEventListener("beforeprint", function () {
    if (plot) plot.setSize({ width: 680, height: 260 });
  });
  show();
})();
