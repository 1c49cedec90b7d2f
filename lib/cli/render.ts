/**
 * Pictures of the `scorefield` command: digit grids drawn pixel by pixel and encoded by pngjs,
 * 2-d scatter and trajectory plots written as SVG and rasterised by resvg with a bundled DejaVu
 * font (no system fonts needed).
 */
import { PNG } from 'pngjs';
import type { Resvg as ResvgClass } from '@resvg/resvg-js';
import { missing, requirePeers } from '../optional';

export interface Image {
  png: Uint8Array;
  width: number;
  height: number;
}

/**
 * An image grid of `batch` square images (side x side values in [-1, 1], white on black),
 * each pixel upscaled `scale` times, with a 2-pixel grey gutter.
 */
export function imageGrid(x: Float32Array, batch: number, side: number, scale = 4): Image {
  const cols = Math.ceil(Math.sqrt(batch));
  const rows = Math.ceil(batch / cols);
  const gap = 2;
  const cell = side * scale;
  const width = cols * cell + (cols + 1) * gap;
  const height = rows * cell + (rows + 1) * gap;
  const png = new PNG({ width, height, colorType: 6 });
  png.data.fill(96);
  for (let i = 0; i < width * height; i++) png.data[4 * i + 3] = 255;
  for (let b = 0; b < batch; b++) {
    const ox = gap + (b % cols) * (cell + gap);
    const oy = gap + Math.floor(b / cols) * (cell + gap);
    for (let py = 0; py < cell; py++) {
      for (let px = 0; px < cell; px++) {
        const v = x[b * side * side + Math.floor(py / scale) * side + Math.floor(px / scale)];
        const g = Math.round(255 * Math.min(1, Math.max(0, (v + 1) / 2)));
        const o = 4 * ((oy + py) * width + ox + px);
        png.data[o] = g;
        png.data[o + 1] = g;
        png.data[o + 2] = g;
      }
    }
  }
  return { png: PNG.sync.write(png), width, height };
}

/** One panel of a 2-d plot: grey data points, coloured samples, optional polylines. */
export interface Panel {
  title: string;
  data: Float32Array;
  samples?: Float32Array;
  /** Each path: x0, y0, x1, y1, ... */
  paths?: Float32Array[];
  subtitle?: string;
}

const PALETTE = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#e377c2', '#8c564b'];

function bounds(panels: Panel[]): [number, number, number, number] {
  let lo = [Infinity, Infinity];
  let hi = [-Infinity, -Infinity];
  for (const p of panels) {
    for (let i = 0; i + 1 < p.data.length; i += 2) {
      if (!Number.isFinite(p.data[i]) || !Number.isFinite(p.data[i + 1])) continue;
      lo = [Math.min(lo[0], p.data[i]), Math.min(lo[1], p.data[i + 1])];
      hi = [Math.max(hi[0], p.data[i]), Math.max(hi[1], p.data[i + 1])];
    }
  }
  if (!(lo[0] <= hi[0])) return [-1, 1, -1, 1];  // no finite point
  const cx = (lo[0] + hi[0]) / 2, cy = (lo[1] + hi[1]) / 2;
  const half = (0.5 * Math.max(hi[0] - lo[0], hi[1] - lo[1]) || 1) * 1.25;
  return [cx - half, cx + half, cy - half, cy + half];
}

/**
 * Panels side by side (`columns` per row), all on the same axes (the data's bounding box plus a
 * margin; points outside are clipped), rasterised to PNG.
 */
export function scatterPanels(panels: Panel[], columns = panels.length, size = 320): Image {
  const [x0, x1, y0, y1] = bounds(panels);
  const head = 44;
  const rows = Math.ceil(panels.length / columns);
  const width = columns * size;
  const height = rows * (size + head);
  const sx = (v: number) => ((v - x0) / (x1 - x0)) * (size - 16) + 8;
  const sy = (v: number) => size - 8 - ((v - y0) / (y1 - y0)) * (size - 16);
  // Everything drawn stays within one panel's width of the panel: points beyond are not drawn
  // (the clip path would hide them) and path segments are cut there, so the rasteriser never
  // meets coordinates far outside its canvas (trajectories start at sigma 80, which on data
  // spread over 1e-4 is 10^8 pixels away).
  const lo = -size, hi = 2 * size;
  const inView = (px: number, py: number) => px >= lo && px <= hi && py >= lo && py <= hi;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  const dots = (pts: Float32Array, attrs: string, note: (k: number) => void) => {
    const n = Math.floor(pts.length / 2);
    const stride = Math.max(1, Math.ceil(n / MAX_POINTS));
    if (stride > 1) note(stride);
    for (let i = 0; i < n; i += stride) {
      const px = sx(pts[2 * i]), py = sy(pts[2 * i + 1]);
      if (inView(px, py)) parts.push(`<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" ${attrs}/>`);
    }
  };
  panels.forEach((p, k) => {
    const ox = (k % columns) * size;
    const oy = Math.floor(k / columns) * (size + head);
    const notes: string[] = [];
    const body: string[] = [];
    const at = parts.length;
    dots(p.data, 'r="1.3" fill="#bbb"', (s) => notes.push(`every ${s}th data point`));
    body.push(...parts.splice(at));
    (p.paths ?? []).forEach((path, j) => {
      const colour = PALETTE[j % PALETTE.length];
      const pts: number[] = [];
      for (let i = 0; i + 1 < path.length; i += 2) pts.push(sx(path[i]), sy(path[i + 1]));
      for (const run of clipPolyline(pts, lo, hi)) {
        body.push(`<polyline points="${run.map((v, i) => (i % 2 ? ',' : i ? ' ' : '') + v.toFixed(1)).join('')}" fill="none" stroke="${colour}" stroke-width="1.2" stroke-opacity="0.8"/>`);
      }
      const ex = pts[pts.length - 2], ey = pts[pts.length - 1];
      if (pts.length && inView(ex, ey)) body.push(`<circle cx="${ex.toFixed(1)}" cy="${ey.toFixed(1)}" r="3" fill="${colour}"/>`);
    });
    if (p.samples) {
      dots(p.samples, 'r="1.8" fill="#d62728" fill-opacity="0.75"', (s) => notes.push(`every ${s}th sample`));
      body.push(...parts.splice(at));
    }
    const subtitle = [p.subtitle, notes.length ? `(${notes.join(', ')} shown)` : ''].filter(Boolean).join(' ');
    parts.push(`<g transform="translate(${ox},${oy})">`);
    parts.push(`<text x="${size / 2}" y="20" font-size="15" text-anchor="middle">${escape(p.title)}</text>`);
    if (subtitle) parts.push(`<text x="${size / 2}" y="38" font-size="12" fill="#555" text-anchor="middle">${escape(subtitle)}</text>`);
    parts.push(`<g transform="translate(0,${head})"><clipPath id="c${k}"><rect width="${size}" height="${size}"/></clipPath>`);
    parts.push(`<rect x="4" y="4" width="${size - 8}" height="${size - 8}" fill="none" stroke="#ccc"/><g clip-path="url(#c${k})">`);
    parts.push(...body);
    parts.push('</g></g></g>');
  });
  parts.push('</svg>');
  return rasterise(parts.join(''), width, height);
}

/** Points drawn per scatter at most (resvg has a node limit); beyond, every k-th is drawn. */
export const MAX_POINTS = 20000;

/**
 * The parts of a polyline (x0, y0, x1, y1, ...) inside the square [lo, hi]^2, as runs of
 * points: each segment clipped by Liang-Barsky, non-finite points breaking the line.
 */
export function clipPolyline(pts: number[], lo: number, hi: number): number[][] {
  const runs: number[][] = [];
  let run: number[] = [];
  const flush = () => {
    if (run.length >= 4) runs.push(run);
    run = [];
  };
  for (let i = 0; i + 3 < pts.length; i += 2) {
    const [ax, ay, bx, by] = [pts[i], pts[i + 1], pts[i + 2], pts[i + 3]];
    if (![ax, ay, bx, by].every(Number.isFinite)) {
      flush();
      continue;
    }
    let t0 = 0, t1 = 1;
    const dx = bx - ax, dy = by - ay;
    let inside = true;
    for (const [p, q] of [[-dx, ax - lo], [dx, hi - ax], [-dy, ay - lo], [dy, hi - ay]]) {
      if (p === 0) {
        if (q < 0) inside = false;
      } else {
        const r = q / p;
        if (p < 0) t0 = Math.max(t0, r);
        else t1 = Math.min(t1, r);
      }
    }
    if (!inside || t0 > t1) {
      flush();
      continue;
    }
    const sx0 = ax + t0 * dx, sy0 = ay + t0 * dy, sx1 = ax + t1 * dx, sy1 = ay + t1 * dy;
    if (t0 > 0 || run.length === 0) {
      flush();
      run.push(sx0, sy0);
    }
    run.push(sx1, sy1);
    if (t1 < 1) flush();
  }
  flush();
  return runs;
}

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function rasterise(svg: string, width: number, height: number): Image {
  // optional packages (lib/optional.ts): a missing one leaves the picture out, with a warning
  requirePeers('@resvg/resvg-js', 'dejavu-fonts-ttf');
  let Resvg: typeof ResvgClass;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    Resvg = (require('@resvg/resvg-js') as { Resvg: typeof ResvgClass }).Resvg;
  } catch (err) {
    throw missing('@resvg/resvg-js', err);
  }
  const resvg = new Resvg(svg, {
    font: {
      fontFiles: [require.resolve('dejavu-fonts-ttf/ttf/DejaVuSans.ttf')],
      loadSystemFonts: false,
      defaultFontFamily: 'DejaVu Sans',
    },
  });
  return { png: resvg.render().asPng(), width, height };
}
