// The what-if panel's arithmetic: output size, pads and how often each input pixel is read,
// for one convolution or pooling window. The only numbers the page computes itself; they
// follow convkit/shapes.py and are tested against it on random cases
// (tests/explore/test_whatif_js.py).
//
// Per axis, input n, kernel k, stride s, dilation d, pads before/after:
//   k_eff = d*(k - 1) + 1
//   same:     out = ceil(n / s), total pad = max((out - 1)*s + k_eff - n, 0),
//             before = floor(total / 2), after = total - before
//   otherwise out = floor((n + before + after - k_eff) / s) + 1
//   ceilMode: ceil instead of floor, minus one when the last window would start in the
//             right padding; `extra` cells at the end let that last window fit.
"use strict";

const WhatIf = (() => {
  function effectiveKernel(k, d) {
    return d * (k - 1) + 1;
  }

  function samePads(n, k, s, d) {
    const out = Math.ceil(n / s);
    const total = Math.max((out - 1) * s + effectiveKernel(k, d) - n, 0);
    const before = Math.floor(total / 2);
    return [before, total - before];
  }

  function axisOutput(n, k, s, d, before, after, ceilMode) {
    const span = n + before + after - effectiveKernel(k, d);
    if (span < 0) return 0;
    if (ceilMode) {
      let out = Math.ceil(span / s) + 1;
      if ((out - 1) * s >= n + before) out -= 1;   // the last window starts in the padding
      return out;
    }
    return Math.floor(span / s) + 1;
  }

  // settings: {input: [h, w], kernel: [kh, kw], strides: [sh, sw], dilation: [dh, dw],
  //            padding: "valid" | "same" | [[top, bottom], [left, right]],
  //            ceilMode: bool, pool: bool}
  // returns {output: [oh, ow], pads: [[t, b], [l, r]], extra: [bottom, right],
  //          formulas: [height, width]} or {error: text}
  function geometry(settings) {
    const {input, kernel, strides, dilation} = settings;
    const values = [...input, ...kernel, ...strides, ...dilation];
    if (!values.every((v) => Number.isInteger(v) && v >= 1)) {
      return {error: "sizes, kernel, stride and dilation must be whole numbers >= 1"};
    }
    const mode = typeof settings.padding === "string" ? settings.padding : "explicit";
    const ceilMode = Boolean(settings.ceilMode) && mode !== "same";
    const pads = [], output = [], extra = [], formulas = [];
    for (let axis = 0; axis < 2; axis++) {
      const n = input[axis], k = kernel[axis], s = strides[axis], d = dilation[axis];
      let before = 0, after = 0;
      if (mode === "same") {
        [before, after] = samePads(n, k, s, d);
      } else if (mode === "explicit") {
        [before, after] = settings.padding[axis];
        if (!(Number.isInteger(before) && Number.isInteger(after) && before >= 0 && after >= 0)) {
          return {error: "pads must be whole numbers >= 0"};
        }
        if (settings.pool && Math.max(before, after) > Math.floor(k / 2)) {
          return {error: `a pooling pad may be at most half the window (${Math.floor(k / 2)})`};
        }
      }
      const kEff = effectiveKernel(k, d);
      const out = mode === "same" ? Math.ceil(n / s)
        : axisOutput(n, k, s, d, before, after, ceilMode);
      if (out <= 0) {
        return {error: `output size would be ${out}: the ${kEff}-pixel window is larger than ` +
                       `the padded input (${n + before + after})`};
      }
      const need = (out - 1) * s + kEff;
      extra.push(ceilMode ? Math.max(need - (n + before + after), 0) : 0);
      pads.push([before, after]);
      output.push(out);
      if (mode === "same") {
        formulas.push(`ceil(${n} / ${s}) = ${out}`);
      } else {
        const kernelText = d === 1 ? `${kEff}` : `(${d}*(${k} - 1) + 1)`;
        formulas.push(`${ceilMode ? "ceil" : "floor"}((${n} + ${before} + ${after} - ` +
                      `${kernelText}) / ${s}) + 1 = ${out}`);
      }
    }
    return {output, pads, extra, formulas};
  }

  // How many windows read each cell of the padded grid (pads and ceil-mode extra included):
  // rows of counts, (h + top + bottom + extra) x (w + left + right + extra).
  function usageCounts(settings, geo) {
    const rows = settings.input[0] + geo.pads[0][0] + geo.pads[0][1] + geo.extra[0];
    const cols = settings.input[1] + geo.pads[1][0] + geo.pads[1][1] + geo.extra[1];
    const counts = Array.from({length: rows}, () => new Array(cols).fill(0));
    const [sh, sw] = settings.strides, [dh, dw] = settings.dilation, [kh, kw] = settings.kernel;
    for (let oy = 0; oy < geo.output[0]; oy++) {
      for (let ox = 0; ox < geo.output[1]; ox++) {
        for (let i = 0; i < kh; i++) {
          for (let j = 0; j < kw; j++) counts[oy * sh + i * dh][ox * sw + j * dw] += 1;
        }
      }
    }
    return counts;
  }

  return {effectiveKernel, samePads, axisOutput, geometry, usageCounts};
})();

if (typeof module !== "undefined") module.exports = WhatIf;
