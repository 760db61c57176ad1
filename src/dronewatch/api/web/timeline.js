// The timeline chart of bytes leaving the devices per category, drawn with uPlot (vendor/,
// MIT), shared by the web page and by the report of `dronewatch report`, which inlines this file.
// Categories are stacked; the periods local-data mode was on are shaded behind them. No markup
// is built from data: uPlot writes labels as text, and this file sets styles through CSSOM only.
/* global uPlot */
"use strict";

var DronewatchTimeline = (function () {
  // Okabe-Ito colour-blind-safe palette, extended; every colour reads on light and dark grounds.
  var COLOURS = {
    flight_log: "#D55E00", media_sync: "#CC79A7", telemetry: "#E69F00", livestream: "#F0E442",
    firmware: "#56B4E9", geofence: "#009E73", maps: "#0072B2", account: "#A0522D",
    analytics: "#9467BD", crash_report: "#D62728", ads: "#999933", local_link: "#7F8C8D",
    other: "#8C8C8C",
  };

  function colour(category) {
    return COLOURS[category] || COLOURS.other;
  }

  function fmtBytes(n) {
    if (n == null) return "-";
    if (!n) return "0 B";
    var units = ["B", "KB", "MB", "GB", "TB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }

  function cssVar(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function alpha(hex, a) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + a + ")";
  }

  // Stack the categories: series i is the sum of categories 0..i; each band fills between a
  // series and the one below it, so each category's own area shows its bytes.
  function stacked(series, n) {
    var acc = new Array(n).fill(0);
    return series.map(function (s) {
      return s.bytes.map(function (v, i) { acc[i] += v; return acc[i]; });
    });
  }

  // A summary in words, for screen readers and as the chart's accessible name.
  function describe(data) {
    if (!data.series.length) return "No bytes left the devices in this time range.";
    var parts = data.series.map(function (s) {
      var total = s.bytes.reduce(function (a, b) { return a + b; }, 0);
      return s.category + " " + fmtBytes(total);
    });
    return "Bytes leaving per category: " + parts.join(", ") + ".";
  }

  // Draw `data` ({times, series: [{category, bytes per bucket}], step, ldm_on: [[from, to]]})
  // into `el`. opts.onZoom(from, to): called with the range dragged across instead of zooming in
  // place (the page fetches finer buckets); without it, uPlot zooms and a double click resets.
  function draw(el, data, opts) {
    opts = opts || {};
    var n = data.times.length;
    var raw = data.series.map(function (s) { return s.bytes; });
    var stack = stacked(data.series, n);
    var times = data.times;
    // A stepped series holds each bucket's value until the next time: the last bucket needs a
    // time after it (the range's end) to be drawn at all, and a capture of a few seconds is one
    // bucket. Without it the last bucket is missing and a lone one leaves the chart empty (and
    // uPlot widens a one-point range to years).
    var end = data.end != null ? data.end : n ? data.times[n - 1] + (data.step || 1) : null;
    if (n && end != null && end > data.times[n - 1]) {
      times = data.times.concat([end]);
      stack = stack.map(function (s) { return s.concat([s[n - 1]]); });
    }
    var fg = cssVar("--fg", "#1b1f24");
    var grid = cssVar("--line", "#d0d7de");
    var shade = cssVar("--ldm-shade", "rgba(10,125,50,0.12)");
    var series = [{ label: "Time", value: function (u, v) { return v == null ? "-" : new Date(v * 1000).toLocaleString(); } }];
    var bands = [];
    data.series.forEach(function (s, i) {
      var c = colour(s.category);
      series.push({
        label: s.category,
        stroke: c,
        width: 1.5,
        fill: alpha(c, 0.55),
        paths: uPlot.paths.stepped({ align: 1 }),
        points: { show: false },
        value: function (u, v, si, idx) { return idx == null ? "-" : fmtBytes(raw[si - 1][idx]); },
      });
      if (i > 0) bands.push({ series: [i + 1, i], fill: alpha(c, 0.55) });
    });
    var ldm = data.ldm_on || [];
    var width = Math.max(280, el.clientWidth || 600);
    var options = {
      width: width,
      height: opts.height || (width < 500 ? 220 : 280),
      series: series,
      bands: bands,
      scales: { x: { time: true }, y: { range: function (u, lo, hi) { return [0, Math.max(hi, 1) * 1.05]; } } },
      axes: [
        { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
        {
          stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid },
          size: 70, values: function (u, vals) { return vals.map(fmtBytes); },
        },
      ],
      legend: { live: true },
      cursor: { drag: { x: true, y: false, setScale: !opts.onZoom } },
      hooks: {
        drawClear: [function (u) {
          if (!ldm.length) return;
          var ctx = u.ctx;
          ctx.save();
          ctx.fillStyle = shade;
          ldm.forEach(function (w) {
            var x0 = Math.max(u.bbox.left, u.valToPos(w[0], "x", true));
            var x1 = Math.min(u.bbox.left + u.bbox.width, u.valToPos(w[1], "x", true));
            if (x1 > x0) ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
          });
          ctx.restore();
        }],
        setSelect: [function (u) {
          if (!opts.onZoom || u.select.width < 2) return;
          var from = u.posToVal(u.select.left, "x");
          var to = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          opts.onZoom(from, to);
        }],
      },
    };
    el.replaceChildren();
    el.setAttribute("aria-label", describe(data));
    var plot = new uPlot(options, [times].concat(stack), el);
    if (typeof ResizeObserver !== "undefined") {
      var ro = new ResizeObserver(function () {
        var w = Math.max(280, el.clientWidth);
        if (Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height: w < 500 ? 220 : 280 });
      });
      ro.observe(el);
      plot.dronewatchObserver = ro;
    }
    return plot;
  }

  function destroy(plot) {
    if (!plot) return;
    if (plot.dronewatchObserver) plot.dronewatchObserver.disconnect();
    plot.destroy();
  }

  return { COLOURS: COLOURS, colour: colour, fmtBytes: fmtBytes, describe: describe, draw: draw, destroy: destroy };
})();
