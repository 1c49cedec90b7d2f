/**
 * Pictures of the `scorefield` command: digit grids drawn pixel by pixel and encoded by pngjs,
 * 2-d scatter and trajectory plots written as SVG and rasterised by resvg with a bundled DejaVu
 * font (no system fonts needed).
 */
import { PNG } from 'pngjs';
import { Resvg } from '@resvg/resvg-js';

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
      lo = [Math.min(lo[0], p.data[i]), Math.min(lo[1], p.data[i + 1])];
      hi = [Math.max(hi[0], p.data[i]), Math.max(hi[1], p.data[i + 1])];
    }
  }
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
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  panels.forEach((p, k) => {
    const ox = (k % columns) * size;
    const oy = Math.floor(k / columns) * (size + head);
    parts.push(`<g transform="translate(${ox},${oy})">`);
    parts.push(`<text x="${size / 2}" y="20" font-size="15" text-anchor="middle">${escape(p.title)}</text>`);
    if (p.subtitle) parts.push(`<text x="${size / 2}" y="38" font-size="12" fill="#555" text-anchor="middle">${escape(p.subtitle)}</text>`);
    parts.push(`<g transform="translate(0,${head})"><clipPath id="c${k}"><rect width="${size}" height="${size}"/></clipPath>`);
    parts.push(`<rect x="4" y="4" width="${size - 8}" height="${size - 8}" fill="none" stroke="#ccc"/><g clip-path="url(#c${k})">`);
    for (let i = 0; i + 1 < p.data.length; i += 2) {
      parts.push(`<circle cx="${sx(p.data[i]).toFixed(1)}" cy="${sy(p.data[i + 1]).toFixed(1)}" r="1.3" fill="#bbb"/>`);
    }
    (p.paths ?? []).forEach((path, j) => {
      const pts: string[] = [];
      for (let i = 0; i + 1 < path.length; i += 2) pts.push(`${sx(path[i]).toFixed(1)},${sy(path[i + 1]).toFixed(1)}`);
      const colour = PALETTE[j % PALETTE.length];
      parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${colour}" stroke-width="1.2" stroke-opacity="0.8"/>`);
      if (pts.length) {
        const [ex, ey] = pts[pts.length - 1].split(',');
        parts.push(`<circle cx="${ex}" cy="${ey}" r="3" fill="${colour}"/>`);
      }
    });
    const s = p.samples;
    if (s) {
      for (let i = 0; i + 1 < s.length; i += 2) {
        parts.push(`<circle cx="${sx(s[i]).toFixed(1)}" cy="${sy(s[i + 1]).toFixed(1)}" r="1.8" fill="#d62728" fill-opacity="0.75"/>`);
      }
    }
    parts.push('</g></g></g>');
  });
  parts.push('</svg>');
  return rasterise(parts.join(''), width, height);
}

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function rasterise(svg: string, width: number, height: number): Image {
  const resvg = new Resvg(svg, {
    font: {
      fontFiles: [require.resolve('dejavu-fonts-ttf/ttf/DejaVuSans.ttf')],
      loadSystemFonts: false,
      defaultFontFamily: 'DejaVu Sans',
    },
  });
  return { png: resvg.render().asPng(), width, height };
}
