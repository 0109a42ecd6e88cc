/** A small two-line SVG chart (queries/s and blocks/s), drawn with DOM calls only. */

const SVG = 'http://www.w3.org/2000/svg';

export interface Series {
  queries: number[];
  blocks: number[];
}

export function lineChart(series: Series, label: string): SVGSVGElement {
  const width = 600;
  const height = 160;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const max = Math.max(1, ...series.queries, ...series.blocks);
  const points = (values: number[]): string =>
    values.map((v, i) => `${((i / Math.max(1, values.length - 1)) * (width - 20) + 10).toFixed(1)},${(height - 10 - (v / max) * (height - 20)).toFixed(1)}`).join(' ');
  for (const [name, values] of [['queries', series.queries], ['blocks', series.blocks]] as const) {
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('class', name);
    line.setAttribute('points', points(values));
    svg.append(line);
  }
  return svg;
}
