/* losskit report: draws the charts of the page's JSON block with uPlot.
 * Labels are set as text (uPlot sets legend labels with textContent), never parsed as HTML.
 * Drag: zoom to a range; shift-drag or middle-drag: pan; ctrl-wheel or pinch: zoom;
 * double-click or "reset zoom": everything; a legend entry: hide or show its series;
 * the slider: the EMA weight per step of every smoothed series; "log scale": the y axis. */
(function () {
  "use strict";
  var block = document.getElementById("losskit-charts");
  if (!block || typeof uPlot === "undefined") {
    return;
  }
  var data = JSON.parse(block.textContent);
  var slider = document.getElementById("smoothing");
  var shown = document.getElementById("smoothing-value");
  var syncKey = uPlot.sync("losskit").key;
  var HEIGHT = 240;
  var SPARSE = 40; // fewer values than this get a marker on each
  var charts = [];

  function fmt(v) {
    return v == null ? "\u2013" : String(Number(v.toPrecision(5)));
  }

  // Exponential moving average, debiased at the start; gaps stay gaps (as losskit.report.ema).
  function ema(values, weight) {
    var out = new Array(values.length);
    var average = 0;
    var total = 0;
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (v == null || !isFinite(v)) {
        out[i] = v;
        continue;
      }
      average = weight * average + (1 - weight) * v;
      total = weight * total + (1 - weight);
      out[i] = average / total;
    }
    return out;
  }

  function layout(spec) {
    var rows = [];
    var owner = -1;
    spec.series.forEach(function (s, i) {
      if (s.band) {
        rows.push({src: i, ema: s.smooth !== "none", label: s.label, band: s.band, owner: owner});
        return;
      }
      if (s.smooth === "overlay") {
        rows.push({src: i, ema: false, label: s.label, faint: true});
        rows.push({src: i, ema: true, label: s.label + " (EMA)"});
      } else {
        rows.push({src: i, ema: s.smooth === "replace", label: s.label});
      }
      owner = rows.length; // uPlot index of the row just pushed (index 0 is x)
    });
    return rows;
  }

  // The mean number of steps between a series' values: the slider's weight is per step, so a
  // series logged every k steps (or thinned to every k-th) is smoothed with weight^k per value.
  function gap(x, y) {
    var first = -1;
    var last = -1;
    var count = 0;
    for (var i = 0; i < y.length; i++) {
      if (y[i] != null) {
        first = first < 0 ? i : first;
        last = i;
        count++;
      }
    }
    return count > 1 ? Math.max(1, (x[last] - x[first]) / (count - 1)) : 1;
  }

  function columns(chart, weight) {
    var spec = chart.spec;
    return [spec.x].concat(chart.rows.map(function (row) {
      var y = spec.series[row.src].y;
      return row.ema && weight > 0 ? ema(y, Math.pow(weight, gap(spec.x, y))) : y;
    }));
  }

  function seriesOptions(chart) {
    var spec = chart.spec;
    var list = [{label: "step", value: function (u, v) { return v == null ? "\u2013" : String(v); }}];
    chart.rows.forEach(function (row) {
      var s = spec.series[row.src];
      var sparse = s.y.filter(function (v) { return v != null; }).length < SPARSE;
      list.push({
        label: row.label,
        stroke: row.band ? "transparent" : (row.faint ? s.colour + "55" : s.colour),
        width: row.band ? 0 : (row.faint ? 1 : 1.8),
        spanGaps: true,
        points: {show: (s.points || sparse) && !row.band, size: 5, fill: s.colour},
        value: function (u, v) { return fmt(v); }
      });
    });
    return list;
  }

  function bands(chart) {
    var found = {};
    chart.rows.forEach(function (row, i) {
      if (row.band && row.owner > 0) {
        found[row.owner] = found[row.owner] || {};
        found[row.owner][row.band] = i + 1;
      }
    });
    var out = [];
    Object.keys(found).forEach(function (owner) {
      var pair = found[owner];
      if (pair.low && pair.high) {
        var colour = chart.spec.series[chart.rows[owner - 1].src].colour;
        out.push({series: [pair.high, pair.low], fill: colour + "2e"});
      }
    });
    return out;
  }

  // The hover marker of a series (none for band edges), sized as uPlot's own.
  function cursorPoint(chart) {
    return function (u, si) {
      var row = chart.rows[si - 1];
      if (!row || row.band) {
        return null;
      }
      var pt = document.createElement("div");
      var size = u.cursor.points.size(u, si);
      pt.style.width = pt.style.height = size + "px";
      pt.style.marginLeft = pt.style.marginTop = -size / 2 + "px";
      return pt;
    };
  }

  // Whole steps on the x axis.
  var STEPS = [];
  for (var decade = 1; decade <= 1e9; decade *= 10) {
    STEPS.push(decade, 2 * decade, 5 * decade);
  }

  function panAndZoom(u) {
    var over = u.over;
    over.addEventListener("wheel", function (e) {
      if (!e.ctrlKey) {
        return; // plain wheel scrolls the page
      }
      e.preventDefault();
      var at = u.posToVal(e.clientX - over.getBoundingClientRect().left, "x");
      var min = u.scales.x.min;
      var max = u.scales.x.max;
      var f = e.deltaY < 0 ? 0.8 : 1.25;
      u.setScale("x", {min: at - (at - min) * f, max: at + (max - at) * f});
    }, {passive: false});
    u.root.addEventListener("mousedown", function (e) {
      if (!(e.shiftKey || e.button === 1) || e.target !== over) {
        return;
      }
      e.preventDefault();
      e.stopPropagation(); // not a zoom selection
      var x0 = e.clientX;
      var min = u.scales.x.min;
      var max = u.scales.x.max;
      var perPixel = (max - min) / over.getBoundingClientRect().width;
      function move(ev) {
        var d = (ev.clientX - x0) * perPixel;
        u.setScale("x", {min: min - d, max: max - d});
      }
      function up() {
        document.removeEventListener("mousemove", move);
        document.removeEventListener("mouseup", up);
      }
      document.addEventListener("mousemove", move);
      document.addEventListener("mouseup", up);
    }, true);
  }

  function draw(chart) {
    if (chart.u) {
      chart.u.destroy();
    }
    var log = chart.log.checked;
    var spec = chart.spec;
    var opts = {
      width: Math.max(200, chart.plot.clientWidth),
      height: HEIGHT,
      series: seriesOptions(chart),
      bands: bands(chart),
      scales: {x: {time: false}, y: log ? {distr: 3, log: 10} : {distr: 1}},
      axes: [
        {label: "step", size: 36, labelSize: 18, incrs: STEPS},
        {label: spec.ylabel + (log ? " (log)" : ""), size: 64, labelSize: 18,
         values: function (u, ticks) { return ticks.map(fmt); }}
      ],
      cursor: {
        sync: {key: syncKey, setSeries: false},
        drag: {x: true, y: false},
        points: {show: cursorPoint(chart)}
      },
      legend: {live: true},
      hooks: {
        ready: [panAndZoom],
        setSeries: [function (u, idx, change) {
          if (idx == null || change.show === undefined) {
            return;
          }
          chart.rows.forEach(function (row, i) {
            if (row.band && row.owner === idx && u.series[i + 1].show !== change.show) {
              u.setSeries(i + 1, {show: change.show});
            }
          });
        }]
      }
    };
    chart.u = new uPlot(opts, columns(chart, Number(slider ? slider.value : 0)), chart.plot);
    var legendRows = chart.u.root.querySelectorAll(".u-legend .u-series");
    chart.rows.forEach(function (row, i) {
      if (row.band && legendRows[i + 1]) {
        legendRows[i + 1].style.display = "none";
      }
    });
  }

  document.querySelectorAll("figure.chart").forEach(function (figure) {
    var spec = data.charts[Number(figure.dataset.chart)];
    var chart = {
      spec: spec,
      rows: layout(spec),
      plot: figure.querySelector(".chart-plot"),
      log: figure.querySelector(".chart-log"),
      u: null
    };
    var positive = spec.series.every(function (s) {
      return s.y.every(function (v) { return v == null || v > 0; });
    });
    chart.log.checked = spec.log && positive;
    chart.log.disabled = !positive;
    if (!positive) {
      chart.log.parentNode.title = "values at or below zero: no log scale";
    }
    chart.log.addEventListener("change", function () { draw(chart); });
    figure.querySelector(".chart-reset").addEventListener("click", function () {
      chart.u.setData(chart.u.data, true);
    });
    charts.push(chart);
  });

  if (slider) {
    slider.value = String(data.smoothing);
    shown.textContent = Number(slider.value).toFixed(2);
    slider.addEventListener("input", function () {
      var weight = Number(slider.value);
      shown.textContent = weight.toFixed(2);
      charts.forEach(function (chart) {
        chart.u.setData(columns(chart, weight), false); // keeps the zoom
        chart.u.redraw();
      });
    });
  }
  charts.forEach(draw);

  var pending = 0;
  window.addEventListener("resize", function () {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(function () {
      charts.forEach(function (chart) {
        chart.u.setSize({width: Math.max(200, chart.plot.clientWidth), height: HEIGHT});
      });
    });
  });
})();
