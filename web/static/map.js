// The map of the corpus (/map): every document a point on one <canvas>, placed by meaning
// (/api/map). Hover shows a title (nearest point through a grid of screen cells), a click
// opens the document, drag or arrow keys move, the wheel or +/- zoom, 0 shows the whole map.
// "Colour by" switches between clusters and facets; the query box marks /api/search's best
// 50 documents. Titles go in through textContent only: they are the documents' own text.
// For tests: #map gets data-state="ready", data-points (points drawn) and data-marked, and
// window.searcherMap gives screen positions and the point under a position.
(function () {
  "use strict";
  var root = document.getElementById("map");
  if (!root) return;
  var canvas = document.getElementById("map-canvas");
  var frame = document.getElementById("map-frame");
  var tip = document.getElementById("map-tip");
  var statusLine = document.getElementById("map-status");
  var legend = document.getElementById("map-legend");
  var hitsList = document.getElementById("map-hits");
  var colourSelect = document.getElementById("map-colour");
  var form = document.getElementById("map-form");
  var queryBox = document.getElementById("map-q");
  var ctx = canvas.getContext("2d");

  var PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#2f4b7c", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#bcbd22", "#17becf", "#a05195"];
  var OTHER = "#9aa0a6";
  var CELL = 16; // px: the hover grid
  var HOVER_PX = 10; // a point this near the pointer is under it
  var SEARCH_K = 50;

  var map = null; // the /api/map payload
  var n = 0;
  var bx, by; // base screen position of each point (CSS px, whole map in view)
  var sx, sy; // screen position now (after zoom and pan)
  var view = { k: 1, tx: 0, ty: 0 };
  var width = 0, height = 0;
  var colourIndex = null; // Uint8Array: palette slot of each point (PALETTE.length: other)
  var order = null; // points sorted by colour slot, so each colour is one fill
  var marked = null, markedCount = 0;
  var byId = null; // id -> point
  var gridStart = null, gridItems = null, gridCols = 0, gridRows = 0;
  var drawn = 0;

  function say(text) { statusLine.textContent = text; }

  function plural(count, word, many) {
    return count.toLocaleString("en") + " " + (count === 1 ? word : (many || word + "s"));
  }

  function readJSON(response) {
    return response.json().catch(function () { return {}; }).then(function (body) {
      if (!response.ok) throw new Error(body.message || ("the server answered " + response.status));
      return body;
    });
  }

  // -- geometry ---------------------------------------------------------------------------
  function resize() {
    var dpr = window.devicePixelRatio || 1;
    width = Math.max(200, frame.clientWidth);
    var room = window.innerHeight - frame.getBoundingClientRect().top - 24;
    height = Math.round(Math.max(320, Math.min(width * 0.7, room)));
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (!map) return;
    var pad = 14, side = Math.min(width, height) - 2 * pad;
    var ox = (width - side) / 2, oy = (height - side) / 2;
    var xs = map.points.x, ys = map.points.y;
    for (var i = 0; i < n; i++) {
      bx[i] = ox + xs[i] * side;
      by[i] = oy + (1 - ys[i]) * side; // up is +y
    }
    project();
  }

  function project() {
    for (var i = 0; i < n; i++) {
      sx[i] = bx[i] * view.k + view.tx;
      sy[i] = by[i] * view.k + view.ty;
    }
    buildGrid();
    draw();
  }

  function visible(i) { return sx[i] >= 0 && sx[i] <= width && sy[i] >= 0 && sy[i] <= height; }

  function buildGrid() {
    gridCols = Math.ceil(width / CELL) + 1;
    gridRows = Math.ceil(height / CELL) + 1;
    var cells = gridCols * gridRows;
    gridStart = new Int32Array(cells + 1);
    var cellOf = new Int32Array(n);
    var i;
    for (i = 0; i < n; i++) {
      if (!visible(i)) { cellOf[i] = -1; continue; }
      cellOf[i] = Math.floor(sy[i] / CELL) * gridCols + Math.floor(sx[i] / CELL);
      gridStart[cellOf[i] + 1]++;
    }
    for (i = 0; i < cells; i++) gridStart[i + 1] += gridStart[i];
    var fill = gridStart.slice(0, cells);
    gridItems = new Int32Array(gridStart[cells]);
    for (i = 0; i < n; i++) if (cellOf[i] >= 0) gridItems[fill[cellOf[i]]++] = i;
  }

  // The point nearest (x, y) within HOVER_PX, or -1; marked points win ties of distance.
  function nearest(x, y) {
    if (!gridStart) return -1;
    var best = -1, bestD = HOVER_PX * HOVER_PX;
    var c0 = Math.floor((x - HOVER_PX) / CELL), c1 = Math.floor((x + HOVER_PX) / CELL);
    var r0 = Math.floor((y - HOVER_PX) / CELL), r1 = Math.floor((y + HOVER_PX) / CELL);
    for (var r = Math.max(0, r0); r <= Math.min(gridRows - 1, r1); r++) {
      for (var c = Math.max(0, c0); c <= Math.min(gridCols - 1, c1); c++) {
        var cell = r * gridCols + c;
        for (var j = gridStart[cell]; j < gridStart[cell + 1]; j++) {
          var i = gridItems[j], dx = sx[i] - x, dy = sy[i] - y, d = dx * dx + dy * dy;
          if (d < bestD || (d === bestD && marked && marked[i])) { best = i; bestD = d; }
        }
      }
    }
    return best;
  }

  // -- colours ----------------------------------------------------------------------------
  function recolour() {
    var mode = colourSelect.value;
    var entries = []; // [label, count] per palette slot
    colourIndex = new Uint8Array(n);
    var i;
    if (mode === "cluster") {
      var labels = map.points.cluster;
      map.clusters.forEach(function (c, no) { entries.push([c.label, c.size, no]); });
      for (i = 0; i < n; i++) colourIndex[i] = labels[i] < PALETTE.length ? labels[i] : PALETTE.length;
    } else {
      var values = map.facets[mode] || [], column = map.points[mode] || [];
      var counts = new Array(values.length).fill(0), none = 0;
      for (i = 0; i < n; i++) { if (column[i] === null || column[i] === undefined) none++; else counts[column[i]]++; }
      var ranked = values.map(function (v, no) { return no; }).sort(function (a, b) { return counts[b] - counts[a]; });
      var slot = new Array(values.length).fill(PALETTE.length);
      var shown = ranked.slice(0, PALETTE.length - 1);
      shown.forEach(function (no, s) { slot[no] = s; entries.push([values[no], counts[no], s]); });
      var rest = n - none - shown.reduce(function (sum, no) { return sum + counts[no]; }, 0);
      for (i = 0; i < n; i++) {
        var v = column[i];
        colourIndex[i] = (v === null || v === undefined) ? PALETTE.length : slot[v];
      }
      if (rest) entries.push(["other " + mode + "s", rest, PALETTE.length]);
      if (none) entries.push(["no " + mode, none, PALETTE.length]);
    }
    // counting sort by slot: one path a colour
    var starts = new Int32Array(PALETTE.length + 2);
    for (i = 0; i < n; i++) starts[colourIndex[i] + 1]++;
    for (i = 0; i <= PALETTE.length; i++) starts[i + 1] += starts[i];
    order = new Int32Array(n);
    for (i = 0; i < n; i++) order[starts[colourIndex[i]]++] = i;
    showLegend(entries);
    draw();
  }

  function showLegend(entries) {
    legend.textContent = "";
    entries.forEach(function (e) {
      var li = document.createElement("li");
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.backgroundColor = e[2] < PALETTE.length ? PALETTE[e[2]] : OTHER;
      var label = document.createElement("span");
      label.className = "label";
      label.textContent = e[0];
      var count = document.createElement("span");
      count.className = "count";
      count.textContent = e[1].toLocaleString("en");
      li.append(swatch, label, count);
      legend.append(li);
    });
  }

  // -- drawing ----------------------------------------------------------------------------
  function radius() {
    var base = n > 50000 ? 1.2 : n > 10000 ? 1.6 : n > 1000 ? 2.5 : 4.5;
    return Math.min(base * Math.sqrt(view.k), 8);
  }

  function draw() {
    if (!map || !order) return;
    ctx.clearRect(0, 0, width, height);
    var r = radius(), d = 2 * r, slot = -1, count = 0, i, j;
    ctx.globalAlpha = markedCount ? 0.25 : (n > 20000 ? 0.7 : 0.9);
    ctx.beginPath();
    for (j = 0; j < n; j++) {
      i = order[j];
      if (colourIndex[i] !== slot) {
        if (slot >= 0) ctx.fill();
        slot = colourIndex[i];
        ctx.fillStyle = slot < PALETTE.length ? PALETTE[slot] : OTHER;
        ctx.beginPath();
      }
      if (!visible(i)) continue;
      ctx.rect(sx[i] - r, sy[i] - r, d, d);
      count++;
    }
    if (slot >= 0) ctx.fill();
    ctx.globalAlpha = 1;
    if (markedCount) {
      var ring = Math.max(r + 2, 4);
      ctx.lineWidth = 2;
      ctx.strokeStyle = getComputedStyle(root).getPropertyValue("--fg").trim() || "#000";
      for (i = 0; i < n; i++) {
        if (!marked[i] || !visible(i)) continue;
        ctx.beginPath();
        ctx.arc(sx[i], sy[i], ring, 0, 2 * Math.PI);
        ctx.fillStyle = colourIndex[i] < PALETTE.length ? PALETTE[colourIndex[i]] : OTHER;
        ctx.fill();
        ctx.stroke();
      }
    }
    drawn = count;
    root.dataset.points = String(count);
  }

  // -- interaction ------------------------------------------------------------------------
  function localPoint(event) {
    var box = canvas.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top };
  }

  function showTip(i, p) {
    if (i < 0) { tip.hidden = true; canvas.style.cursor = "grab"; return; }
    tip.textContent = map.points.title[i];
    tip.hidden = false;
    var left = Math.min(p.x + 12, width - tip.offsetWidth - 4);
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = Math.max(0, p.y - tip.offsetHeight - 10) + "px";
    canvas.style.cursor = "pointer";
  }

  function documentUrl(i) {
    var url = new URL(root.dataset.document, window.location.href);
    url.searchParams.set("id", map.points.id[i]);
    var q = markedCount ? queryBox.value.trim() : "";
    if (q) url.searchParams.set("q", q);
    return url.pathname + url.search;
  }

  function zoom(factor, x, y) {
    var k = Math.min(64, Math.max(1, view.k * factor));
    factor = k / view.k;
    view.tx = x - (x - view.tx) * factor;
    view.ty = y - (y - view.ty) * factor;
    view.k = k;
    if (k === 1) { view.tx = 0; view.ty = 0; }
    project();
  }

  function pan(dx, dy) { view.tx += dx; view.ty += dy; project(); }

  function reset() { view = { k: 1, tx: 0, ty: 0 }; project(); }

  var drag = null;
  canvas.addEventListener("pointerdown", function (event) {
    if (event.button !== 0) return;
    var p = localPoint(event);
    drag = { x: p.x, y: p.y, moved: false };
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", function (event) {
    if (!map) return;
    var p = localPoint(event);
    if (drag) {
      var dx = p.x - drag.x, dy = p.y - drag.y;
      if (drag.moved || dx * dx + dy * dy > 16) {
        drag.moved = true;
        drag.x = p.x; drag.y = p.y;
        tip.hidden = true;
        pan(dx, dy);
        return;
      }
    }
    showTip(nearest(p.x, p.y), p);
  });
  canvas.addEventListener("pointerup", function (event) {
    var wasDrag = drag && drag.moved;
    drag = null;
    if (!map || wasDrag) return;
    var p = localPoint(event);
    var i = nearest(p.x, p.y);
    if (i >= 0) window.location.assign(documentUrl(i));
  });
  canvas.addEventListener("pointerleave", function () { if (!drag) tip.hidden = true; });
  canvas.addEventListener("wheel", function (event) {
    if (!map) return;
    event.preventDefault();
    var p = localPoint(event);
    zoom(Math.exp(-event.deltaY * 0.002), p.x, p.y);
  }, { passive: false });
  canvas.addEventListener("keydown", function (event) {
    if (!map || event.ctrlKey || event.metaKey || event.altKey) return;
    var step = 40, handled = true;
    if (event.key === "+" || event.key === "=") zoom(1.5, width / 2, height / 2);
    else if (event.key === "-") zoom(1 / 1.5, width / 2, height / 2);
    else if (event.key === "0") reset();
    else if (event.key === "ArrowLeft") pan(step, 0);
    else if (event.key === "ArrowRight") pan(-step, 0);
    else if (event.key === "ArrowUp") pan(0, step);
    else if (event.key === "ArrowDown") pan(0, -step);
    else handled = false;
    if (handled) event.preventDefault();
  });
  document.getElementById("map-reset").addEventListener("click", reset);
  colourSelect.addEventListener("change", function () { if (map) recolour(); });

  // -- marking a query's hits -------------------------------------------------------------
  function setQueryInUrl(q) {
    var url = new URL(window.location.href);
    if (q) url.searchParams.set("q", q); else url.searchParams.delete("q");
    window.history.replaceState(null, "", url.pathname + url.search);
  }

  function clearMarks() {
    marked = new Uint8Array(n);
    markedCount = 0;
    hitsList.textContent = "";
    root.dataset.marked = "0";
    draw();
  }

  function mark(q) {
    setQueryInUrl(q);
    if (!q) { clearMarks(); say(summary()); return; }
    say("Searching…");
    var url = new URL(root.dataset.search, window.location.href);
    url.searchParams.set("q", q);
    url.searchParams.set("k", String(SEARCH_K));
    fetch(url.pathname + url.search, { headers: { Accept: "application/json" } }).then(readJSON).then(function (page) {
      marked = new Uint8Array(n);
      markedCount = 0;
      hitsList.textContent = "";
      page.results.forEach(function (hit) {
        var i = byId.get(hit.doc_id);
        var li = document.createElement("li");
        var link = document.createElement("a");
        link.textContent = hit.title || hit.doc_id;
        if (i !== undefined) {
          if (!marked[i]) markedCount++;
          marked[i] = 1;
          link.href = documentUrl(i);
        } else {
          var off = new URL(root.dataset.document, window.location.href); // keeps its ?index=
          off.searchParams.set("id", hit.doc_id);
          link.href = off.pathname + off.search;
          li.className = "off-map";
        }
        li.append(link);
        hitsList.append(li);
      });
      root.dataset.marked = String(markedCount);
      var missing = page.results.length - markedCount;
      say(plural(markedCount, "best match", "best matches") + " for “" + q + "” marked" +
          (missing > 0 ? " (" + missing + " newer than the map, listed below)" : "") + ".");
      draw();
    }).catch(function (error) { say("Could not search: " + error.message); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (map) mark(queryBox.value.trim());
  });
  document.getElementById("map-clear").addEventListener("click", function () {
    queryBox.value = "";
    if (map) mark("");
  });

  function summary() {
    var text = plural(map.documents, "document") + ", laid out by " + map.method.toUpperCase() +
      " (generation " + map.generation + ")";
    if (map.unplaced) text += "; " + plural(map.unplaced, "document") + " without text are not shown";
    return text + ". Hover for a title, click to open.";
  }

  // -- loading ----------------------------------------------------------------------------
  function start(payload) {
    map = payload;
    n = map.points.id.length;
    bx = new Float32Array(n); by = new Float32Array(n);
    sx = new Float32Array(n); sy = new Float32Array(n);
    byId = new Map();
    for (var i = 0; i < n; i++) byId.set(map.points.id[i], i);
    marked = new Uint8Array(n);
    root.dataset.marked = "0";
    Array.prototype.forEach.call(colourSelect.options, function (option) {
      if (option.value !== "cluster") option.disabled = !(map.facets[option.value] || []).length;
    });
    if (colourSelect.selectedOptions[0] && colourSelect.selectedOptions[0].disabled) colourSelect.value = "cluster";
    resize();
    recolour();
    say(summary());
    root.dataset.state = "ready";
    if (queryBox.value.trim()) mark(queryBox.value.trim());
  }

  window.searcherMap = {
    count: function () { return drawn; },
    ids: function () { return map ? map.points.id.slice() : []; },
    screenPoint: function (i) { return { x: sx[i], y: sy[i] }; },
    at: function (x, y) { var i = nearest(x, y); return i < 0 ? null : map.points.id[i]; },
    markedIds: function () {
      var out = [];
      for (var i = 0; i < n; i++) if (marked[i]) out.push(map.points.id[i]);
      return out;
    },
  };

  var resizing = 0;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizing);
    resizing = window.setTimeout(resize, 100);
  });
  resize();
  fetch(root.dataset.api, { headers: { Accept: "application/json" } }).then(readJSON).then(start).catch(function (error) {
    root.dataset.state = "error";
    say("Could not load the map: " + error.message);
  });
})();
