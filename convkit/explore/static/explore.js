// convkit explore: draws what the server (or the data embedded in an exported page) sends.
// Every number shown for a layer or a cell comes from convkit's own code in Python; this
// script only lays them out. The what-if panel's sizes come from whatif.js.
"use strict";

(() => {
  const embeddedNode = document.getElementById("explore-data");
  const EMBEDDED = embeddedNode ? JSON.parse(embeddedNode.textContent) : null;
  const $ = (id) => document.getElementById(id);
  const state = {model: null, current: null, selected: null, renders: 0, uploads: 0};

  // ------------------------------------------------------------------ data sources
  async function answer(response) {
    let data;
    try {
      data = await response.json();
    } catch (err) {
      throw new Error(`the server answered ${response.status} ${response.statusText}`);
    }
    if (!response.ok || data.error) throw new Error(data.error || response.statusText);
    return data;
  }

  const traceKey = (id, invert) => `${id}|${invert ? 1 : 0}`;
  const cellKey = (level, row, col, channel) => `${level}:${row}:${col}:${channel}`;

  const api = EMBEDDED ? {
    model: async () => EMBEDDED.model,
    select: async (id, invert) => {
      const found = EMBEDDED.traces[traceKey(id, invert)];
      if (!found) {
        throw new Error(`this page was exported with ${EMBEDDED.model.images.length} image(s)` +
                        `${invert ? ", not inverted" : ""}; run convkit explore for others`);
      }
      return found;
    },
    upload: async () => {
      throw new Error("uploading needs the live explorer (convkit explore MODEL); this page " +
                      "is an offline export");
    },
    cell: async (id, invert, level, row, col, channel) => {
      const cells = EMBEDDED.cells[traceKey(id, invert)] || {};
      const found = cells[cellKey(level, row, col, channel)];
      if (!found) {
        throw new Error("this offline page carries the arithmetic of the strongest cell of " +
                        "each channel (outlined in white); run convkit explore for any other cell");
      }
      return found;
    },
  } : {
    model: () => fetch("/api/model").then(answer),
    select: (id, invert) => fetch("/api/select", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({image: id, invert}),
    }).then(answer),
    upload: (file, invert) => fetch(
      `/api/upload?name=${encodeURIComponent(file.name || "upload")}&invert=${invert ? 1 : 0}`,
      {method: "POST", body: file}).then(answer),
    cell: (id, invert, level, row, col, channel) => fetch(
      `/api/cell?image=${encodeURIComponent(id)}&invert=${invert ? 1 : 0}&level=${level}` +
      `&row=${row}&col=${col}&channel=${channel}`).then(answer),
  };

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined) return "pad";
    if (Number.isInteger(value)) return String(value);
    return String(parseFloat(value.toPrecision(7)));
  }

  // A short form for labels: 3 significant digits.
  const short = (value) => (Number.isInteger(value) ? String(value) : String(parseFloat(value.toPrecision(3))));

  const shapeText = (shape) => "(" + shape.map((v) => (v === null ? "None" : v)).join(", ") +
    (shape.length === 1 ? "," : "") + ")";

  function showMessage(text) {
    const box = $("message");
    box.textContent = text;
    box.hidden = !text;
  }

  function bytes(base64) {
    const raw = atob(base64);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  // A dark-blue -> teal -> green -> yellow ramp for feature maps (low -> high).
  const RAMP = (() => {
    const anchors = [[0, [24, 20, 70]], [0.35, [38, 110, 160]], [0.7, [90, 190, 110]],
                     [1, [250, 232, 60]]];
    const table = new Uint8ClampedArray(256 * 3);
    for (let i = 0; i < 256; i++) {
      const t = i / 255;
      let a = 0;
      while (anchors[a + 1][0] < t) a++;
      const [t0, c0] = anchors[a], [t1, c1] = anchors[a + 1];
      const f = (t - t0) / (t1 - t0);
      for (let k = 0; k < 3; k++) table[3 * i + k] = c0[k] + f * (c1[k] - c0[k]);
    }
    return table;
  })();

  // Draw channel `c` of encoded maps (or RGB when rgb=true) onto a new canvas.
  function mapCanvas(maps, data, channel, grey, rgb) {
    const {height: h, width: w} = maps;
    const canvas = el("canvas", {width: w, height: h});
    const context = canvas.getContext("2d");
    const image = context.createImageData(w, h);
    const plane = h * w;
    for (let p = 0; p < plane; p++) {
      let r, g, b;
      if (rgb) {
        r = data[p]; g = data[plane + p]; b = data[2 * plane + p];
      } else {
        const q = data[channel * plane + p];
        if (grey) { r = g = b = q; } else { r = RAMP[3 * q]; g = RAMP[3 * q + 1]; b = RAMP[3 * q + 2]; }
      }
      image.data.set([r, g, b, 255], 4 * p);
    }
    context.putImageData(image, 0, 0);
    return canvas;
  }

  function displayWidth(maps, channels, level) {
    const large = Math.max(maps.height, maps.width) > 100;     // photographs: bigger panels
    const target = channels > 8 ? 64 : (large ? 320 : (level === 0 ? 168 : 150));
    let scale = target / Math.max(maps.height, maps.width);
    if (scale >= 1) scale = Math.floor(scale);
    return [maps.width * scale, maps.height * scale];
  }

  // ------------------------------------------------------------------ the model
  function renderModel(model) {
    $("model-title").textContent = model.title;
    const t = model.totals;
    $("model-summary").textContent =
      `input ${shapeText(model.input_shape)} · ${model.layers.length - 1} layers · ` +
      `${t.params.toLocaleString("en")} parameters · ` +
      `${t.macs.toLocaleString("en")} multiply-accumulates per image`;
    $("model-notes").textContent = model.notes.join(" · ");
    const select = $("image-select");
    select.replaceChildren(...model.images.map((img) => el("option", {value: img.id, text: img.label})));
    if (model.default_image) select.value = model.default_image;
    const network = $("network");
    network.replaceChildren(el("div", {id: "prediction"}));
    for (const layer of model.layers) network.append(layerSection(layer));
  }

  function layerSection(layer) {
    const head = el("div", {class: "layer-head"},
      el("span", {class: "name", text: layer.name}),
      el("span", {class: "class", text: layer.class}),
      el("span", {class: "shape", text: "→ " + shapeText(layer.output_shape)}));
    if (layer.window) {
      head.append(el("button", {text: "what-if", title: "copy this layer's window into the what-if panel",
                                onclick: () => { loadWhatIf(layer.window); $("whatif").scrollIntoView({block: "nearest"}); },
                                "data-level": layer.level}));
    }
    if (layer.parents && (layer.parents.length > 1 || layer.parents[0] !== layer.level - 1)) {
      const names = layer.parents.map((level) => state.model.layers[level].name);
      head.append(el("span", {class: "hint", text: `reads ${names.join(" + ")}`}));
    }
    const section = el("section", {class: "layer", id: `layer-${layer.level}`, "data-level": layer.level,
                                   "data-name": layer.name}, head);
    if (layer.explain_text) {
      const details = el("details", {open: Boolean(layer.window) || layer.class === "Dense"},
        el("summary", {text: "explain"}),
        el("pre", {class: "explain", text: layer.explain_text}));
      section.append(details);
      for (const warning of layer.explain.warnings) {
        section.append(el("div", {class: "warning", text: warning}));
      }
    }
    section.append(el("div", {class: "content"}));
    return section;
  }

  // ------------------------------------------------------------------ one image
  function renderTrace(response) {
    const trace = response.trace;
    state.current = response;
    const image = trace.image;
    for (const level of trace.levels) {
      const section = document.querySelector(`#layer-${level.level} .content`);
      section.replaceChildren(...levelContent(level, trace));
    }
    const prediction = $("prediction");
    prediction.replaceChildren();
    if (trace.prediction) {
      const best = trace.prediction[0];
      prediction.append(el("div", {text: `Prediction for ${image.name}: ${best.label} ` +
                                         `(${fmt(best.value)})`}));
    }
    const input = document.querySelector("#layer-0 .content");
    input.prepend(el("div", {class: "hint", text: `as the model sees it: ${image.note}`}));
    for (const warning of image.warnings) input.append(el("div", {class: "warning", text: warning}));
    if (EMBEDDED) markCarriedCells(response, trace);
    state.renders += 1;
    document.body.dataset.renders = String(state.renders);
    document.body.dataset.image = response.id;
  }

  function levelContent(level, trace) {
    const layer = state.model.layers[level.level];
    if (level.maps) return [mapsGrid(level, layer)];
    if (level.values) return denseContent(level, layer, trace);
    if (level.strip) {
      const canvas = mapCanvas(level.strip, bytes(level.strip.data), 0, false, false);
      canvas.style.width = "100%";
      canvas.style.height = "18px";
      return [canvas, el("div", {class: "map-label",
        text: `${level.shape[0]} values, ${fmt(level.strip.lo[0])} .. ${fmt(level.strip.hi[0])}` +
              (layer.class === "Dropout" ? " (dropout passes everything through at inference)" : "")})];
    }
    return [el("div", {class: "hint", text: `output ${shapeText(level.shape)}`})];
  }

  function mapsGrid(level, layer) {
    const maps = level.maps;
    const data = bytes(maps.data);
    const grid = el("div", {class: "maps"});
    const rgb = level.level === 0 && maps.channels === 3;
    const panels = rgb ? [-1] : [...Array(maps.channels).keys()];
    const [w, h] = displayWidth(maps, panels.length, level.level);
    for (const channel of panels) {
      const canvas = mapCanvas(maps, data, channel, level.level === 0, rgb);
      canvas.style.width = `${w}px`;
      canvas.style.height = `${h}px`;
      canvas.dataset.level = level.level;
      canvas.dataset.channel = rgb ? 0 : channel;
      canvas.classList.add("map");
      if (layer.window) canvas.addEventListener("click", (event) => clickCell(event, layer, channel));
      const wrap = el("div", {class: "map-wrap", "data-level": level.level,
                              "data-channel": rgb ? 0 : channel}, canvas);
      const label = rgb ? "RGB" : (level.level === 0 ? "input" : `ch ${channel}`);
      const range = rgb || level.level === 0 ? "0 .. 1" :
        `${short(maps.lo[channel])} .. ${short(maps.hi[channel])}`;
      grid.append(el("div", {class: "map-cell"}, wrap,
                     el("div", {class: "map-label", text: `${label}: ${range}`})));
    }
    return grid;
  }

  function denseContent(level, layer, trace) {
    const values = level.values;
    const top = Math.max(...values.map(Math.abs)) || 1;
    const best = values.indexOf(Math.max(...values));
    const bars = el("div", {class: "bars"});
    const labels = state.model.class_names;
    values.forEach((value, i) => {
      const label = labels && labels[i] !== String(i) ? labels[i] : `${i}`;
      bars.append(el("div", {class: "bar-row" + (i === best ? " top" : "")},
        el("span", {class: "label", text: label}),
        el("span", {class: "bar" + (value < 0 ? " negative" : ""),
                    style: `width: ${Math.round(160 * Math.abs(value) / top)}px`}),
        el("span", {class: "value", text: fmt(value)})));
    });
    const parts = [bars];
    if (level.softmax) parts.push(softmaxTable(level, labels));
    return parts;
  }

  function softmaxTable(level, labels) {
    const s = level.softmax;
    const table = el("table", {class: "numbers softmax", id: `softmax-${level.level}`});
    table.append(el("tr", {}, ...["class", "logit z", "z - max", "exp(z - max)", "p = exp / sum",
                                  "model"].map((t) => el("th", {text: t}))));
    level.logits.forEach((z, i) => {
      table.append(el("tr", {}, el("td", {text: labels && labels[i] ? labels[i] : String(i)}),
        el("td", {text: fmt(z)}), el("td", {text: fmt(z - s.max_logit)}),
        el("td", {text: fmt(s.exps[i])}), el("td", {text: fmt(s.probabilities[i])}),
        el("td", {text: fmt(level.values[i])})));
    });
    return el("div", {},
      el("div", {class: "hint", text: "softmax: subtract the largest logit (" + fmt(s.max_logit) +
        "), exponentiate, divide by the sum of the exponentials (" + fmt(s.sum) + ")"}),
      table);
  }

  // In an exported page: outline the cells whose arithmetic the page carries.
  function markCarriedCells(response, trace) {
    const cells = EMBEDDED.cells[traceKey(response.id, response.invert)] || {};
    for (const key of Object.keys(cells)) {
      const [level, row, col, channel] = key.split(":").map(Number);
      const maps = trace.levels[level].maps;
      const wrap = document.querySelector(
        `.map-wrap[data-level="${level}"][data-channel="${channel}"]`);
      if (wrap) placeBox(wrap, row, col, row, col, maps.height, maps.width, "", "carried");
    }
  }

  // ------------------------------------------------------------------ cells
  async function clickCell(event, layer, channel) {
    const canvas = event.currentTarget;
    const box = canvas.getBoundingClientRect();
    const row = Math.min(canvas.height - 1, Math.floor((event.clientY - box.top) / box.height * canvas.height));
    const col = Math.min(canvas.width - 1, Math.floor((event.clientX - box.left) / box.width * canvas.width));
    state.selected = {level: layer.level, row, col, channel};
    await showCell();
  }

  async function showCell() {
    const sel = state.selected;
    if (!sel || !state.current) return;
    const layer = state.model.layers[sel.level];
    drawReceptive(layer, sel);
    try {
      const cell = await api.cell(state.current.id, state.current.invert, sel.level, sel.row,
                                  sel.col, sel.channel);
      renderCell(cell);
    } catch (err) {
      $("detail").replaceChildren(el("h2", {text: "Cell arithmetic"}),
                                  el("div", {class: "error", id: "detail-error", text: err.message}));
    }
  }

  function placeBox(wrap, top, left, bottom, right, rows, cols, extraClass, baseClass = "rf") {
    const t = Math.max(top, 0), l = Math.max(left, 0);
    const b = Math.min(bottom, rows - 1), r = Math.min(right, cols - 1);
    if (b < t || r < l) return;
    wrap.append(el("div", {class: baseClass + (extraClass ? " " + extraClass : ""),
      style: `top: ${100 * t / rows}%; left: ${100 * l / cols}%; ` +
             `height: ${100 * (b - t + 1) / rows}%; width: ${100 * (r - l + 1) / cols}%`}));
  }

  function drawReceptive(layer, sel) {
    document.querySelectorAll(".rf").forEach((node) => node.remove());
    const levels = state.current.trace.levels;
    const sizeOf = (level) => [levels[level].maps.height, levels[level].maps.width];
    const [rows, cols] = sizeOf(sel.level);
    document.querySelectorAll(`.map-wrap[data-level="${sel.level}"]`).forEach((wrap) =>
      placeBox(wrap, sel.row, sel.col, sel.row, sel.col, rows, cols, "cell"));
    for (const map of layer.receptive) {
      const [h, w] = sizeOf(map.level);
      const top = sel.row * map.jump[0] + map.lo[0], bottom = sel.row * map.jump[0] + map.hi[0];
      const left = sel.col * map.jump[1] + map.lo[1], right = sel.col * map.jump[1] + map.hi[1];
      document.querySelectorAll(`.map-wrap[data-level="${map.level}"]`).forEach((wrap) =>
        placeBox(wrap, top, left, bottom, right, h, w));
    }
  }

  function numberTable(grid, padded, cellClass, format = fmt, highlight = null) {
    const table = el("table", {class: "numbers"});
    grid.forEach((row, i) => {
      table.append(el("tr", {}, ...row.map((value, j) => {
        const classes = [cellClass];
        if (padded && padded[i][j]) classes.push("pad");
        if (highlight && highlight[0] === i && highlight[1] === j) classes.push("win");
        return el("td", {class: classes.join(" "), text: value === null ? "pad" : format(value)});
      })));
    });
    return table;
  }

  function renderCell(cell) {
    const detail = $("detail");
    const rowsText = `${cell.input_rows[0]}..${cell.input_rows[cell.input_rows.length - 1]}`;
    const colsText = `${cell.input_cols[0]}..${cell.input_cols[cell.input_cols.length - 1]}`;
    const parts = [el("h2", {text: "Cell arithmetic"}),
      el("div", {id: "detail-title", text: `${cell.layer} (${cell.class}) output row ${cell.row}, ` +
        `column ${cell.col}, channel ${cell.channel}`}),
      el("div", {class: "hint", text: `reads rows ${rowsText}, columns ${colsText} of its input ` +
        "(negative or past the end: padding, grey)"})];
    if (cell.op === "conv") {
      const blocks = el("div", {class: "channels"});
      cell.in_channels.forEach((inChannel, i) => {
        blocks.append(el("div", {class: "channel-block"},
          el("div", {class: "title", text: `input channel ${inChannel}: patch × kernel = products, ` +
                                           `sum ${fmt(cell.channel_sums[i])}`}),
          captioned("patch", numberTable(cell.patch[i], cell.padded, "patch", short)),
          el("span", {class: "op", text: "×"}),
          captioned("kernel", numberTable(cell.kernel[i], null, "kernel", short)),
          el("span", {class: "op", text: "="}),
          captioned("products", numberTable(cell.products[i], cell.padded, "product"))));
      });
      parts.push(
        line("sum of all products", "detail-sum", cell.sum),
        line("+ bias", "detail-bias", cell.bias),
        line("= pre-activation", "detail-pre", cell.pre_activation),
        line(`${cell.activation_name}(pre-activation)`, "detail-activation", cell.activation),
        line("the model computed", "detail-model", cell.model_value),
        line("difference", "detail-difference", cell.difference),
        el("div", {class: "hint", text: `per input channel (${cell.in_channels.length}):`}),
        blocks);
    } else {
      parts.push(el("div", {class: "hint", text: cell.op === "max" ?
        "max pooling: the largest value of the window (padding counts as -inf)" :
        "average pooling: the sum over the counted cells divided by their number"}),
        numberTable(cell.window, cell.padded, "window", fmt, cell.op === "max" ? cell.argmax : null));
      if (cell.op === "avg") {
        parts.push(line("sum", "detail-sum", cell.sum), line("cells counted", "detail-count", cell.count));
      }
      parts.push(line(cell.op === "max" ? "max" : "average", "detail-activation", cell.activation),
                 line("the model computed", "detail-model", cell.model_value),
                 line("difference", "detail-difference", cell.difference));
    }
    detail.replaceChildren(...parts);
  }

  function captioned(caption, table) {
    return el("div", {class: "captioned"}, el("div", {class: "caption", text: caption}), table);
  }

  function line(label, id, value) {
    return el("div", {class: "totals"}, el("div", {}, `${label}: `, el("b", {id, text: fmt(value)})));
  }

  // ------------------------------------------------------------------ what-if
  const whatIfIds = ["op", "h", "w", "kh", "kw", "sh", "sw", "dh", "dw", "padding", "pt", "pb",
                     "pl", "pr", "ceil"];

  function whatIfSettings() {
    const number = (id) => Number($(`whatif-${id}`).value);
    const mode = $("whatif-padding").value;
    return {
      input: [number("h"), number("w")], kernel: [number("kh"), number("kw")],
      strides: [number("sh"), number("sw")], dilation: [number("dh"), number("dw")],
      padding: mode === "explicit" ? [[number("pt"), number("pb")], [number("pl"), number("pr")]] : mode,
      ceilMode: $("whatif-ceil").checked, pool: $("whatif-op").value !== "conv",
    };
  }

  function updateWhatIf() {
    const settings = whatIfSettings();
    $("whatif-explicit").hidden = $("whatif-padding").value !== "explicit";
    const geo = WhatIf.geometry(settings);
    $("whatif-error").textContent = geo.error || "";
    const counts = $("whatif-counts");
    if (geo.error) {
      $("whatif-output").textContent = "—";
      $("whatif-pads").textContent = "";
      $("whatif-formulas").textContent = "";
      counts.replaceChildren();
      return;
    }
    $("whatif-output").textContent = `${geo.output[0]}x${geo.output[1]}`;
    const [[t, b], [l, r]] = geo.pads;
    $("whatif-pads").textContent = `top ${t}, bottom ${b}, left ${l}, right ${r}` +
      (geo.extra[0] || geo.extra[1] ? ` (+ceil_mode bottom ${geo.extra[0]}, right ${geo.extra[1]})` : "");
    $("whatif-formulas").replaceChildren(
      el("div", {text: `height: ${geo.formulas[0]}`}), el("div", {text: `width: ${geo.formulas[1]}`}));
    const grid = WhatIf.usageCounts(settings, geo);
    if (grid.length * grid[0].length > 48 * 48) {
      counts.replaceChildren(el("div", {class: "hint", text: "(too large to draw: at most 48x48 cells)"}));
      return;
    }
    const peak = Math.max(...grid.flat(), 1);
    const table = el("table", {});
    grid.forEach((row, i) => {
      table.append(el("tr", {}, ...row.map((count, j) => {
        const inside = i >= t && i < t + settings.input[0] && j >= l && j < l + settings.input[1];
        const shade = Math.round(255 - 150 * count / peak);
        return el("td", {class: inside ? (count === 0 ? "never" : "") : "pad", text: String(count),
                         style: inside ? `background: rgb(255, ${shade}, ${Math.round(shade * 0.6)})` : ""});
      })));
    });
    counts.replaceChildren(table);
  }

  function loadWhatIf(window_) {
    const set = (id, value) => { $(`whatif-${id}`).value = value; };
    set("op", window_.op);
    [set("h", window_.input[0]), set("w", window_.input[1])];
    [set("kh", window_.kernel[0]), set("kw", window_.kernel[1])];
    [set("sh", window_.strides[0]), set("sw", window_.strides[1])];
    [set("dh", window_.dilation[0]), set("dw", window_.dilation[1])];
    if (typeof window_.padding === "string") {
      set("padding", window_.padding);
    } else {
      set("padding", "explicit");
      [set("pt", window_.padding[0][0]), set("pb", window_.padding[0][1])];
      [set("pl", window_.padding[1][0]), set("pr", window_.padding[1][1])];
    }
    $("whatif-ceil").checked = window_.ceil_mode;
    updateWhatIf();
  }

  // ------------------------------------------------------------------ images
  async function run(action, label) {
    $("status").textContent = `${label}…`;
    const start = performance.now();
    try {
      const response = await action();
      showMessage("");
      renderTrace(response);
      const ms = performance.now() - start;
      document.body.dataset.lastMs = ms.toFixed(1);
      $("status").textContent = `${label}: every layer drawn in ${ms.toFixed(0)} ms`;
      await showCell();
      return true;
    } catch (err) {
      showMessage(err.message);
      $("status").textContent = "";
      document.body.dataset.errors = String(Number(document.body.dataset.errors || 0) + 1);
      return false;
    }
  }

  function selectImage() {
    const id = $("image-select").value;
    return run(() => api.select(id, $("invert").checked), id);
  }

  async function uploadFile(file) {
    if (!file) return;
    const limit = state.model.max_upload_bytes;
    if (limit && file.size > limit) {
      showMessage(`${file.name}: the file is ${(file.size / 2 ** 20).toFixed(1)} MB; the explorer ` +
                  `takes images up to ${Math.floor(limit / 2 ** 20)} MB`);
      document.body.dataset.errors = String(Number(document.body.dataset.errors || 0) + 1);
      return;
    }
    const ok = await run(() => api.upload(file, $("invert").checked), file.name);
    if (ok) {
      const select = $("image-select");
      select.append(el("option", {value: state.current.id, text: `upload: ${file.name}`}));
      select.value = state.current.id;
    }
  }

  async function start() {
    try {
      state.model = await api.model();
    } catch (err) {
      showMessage(`cannot load the model: ${err.message}`);
      return;
    }
    renderModel(state.model);
    const firstWindow = state.model.layers.find((layer) => layer.window);
    if (firstWindow) loadWhatIf(firstWindow.window); else updateWhatIf();
    for (const id of whatIfIds) $(`whatif-${id}`).addEventListener("input", updateWhatIf);
    $("image-select").addEventListener("change", selectImage);
    $("invert").addEventListener("change", selectImage);
    $("upload").addEventListener("change", (event) => uploadFile(event.target.files[0]));
    document.addEventListener("dragover", (event) => { event.preventDefault(); document.body.classList.add("dragging"); });
    document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
    document.addEventListener("drop", (event) => {
      event.preventDefault();
      document.body.classList.remove("dragging");
      uploadFile(event.dataTransfer.files[0]);
    });
    if (EMBEDDED) {
      $("upload").disabled = true;
      $("model-notes").textContent += (state.model.notes.length ? " · " : "") +
        "offline export: cell arithmetic for the strongest cell of each channel, outlined in white";
    }
    await selectImage();
    document.body.dataset.ready = "1";
  }

  start();
})();
