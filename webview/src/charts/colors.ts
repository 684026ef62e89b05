/**
 * Colours for the profile charts: the theme's own (from `--vscode-*` variables) for text, grids,
 * bars and diverging ends, and a perceptual sequential scale for heatmaps that stays legible on
 * light and dark backgrounds (viridis: dark violet to yellow, monotonic in lightness).
 */
import { chartTheme, type ChartTheme } from '../theme';

export interface ChartsTheme extends ChartTheme {
  background: string;
  /** Diverging scale ends: "more in this profile" and "less in this profile". */
  positive: string;
  negative: string;
}

export function chartsTheme(): ChartsTheme {
  const style = getComputedStyle(document.documentElement);
  const css = (name: string, fallback: string) => style.getPropertyValue(name).trim() || fallback;
  return {
    ...chartTheme(),
    background: css('--vscode-editor-background', '#1e1e1e'),
    positive: css('--vscode-charts-orange', '#d18616'),
    negative: css('--vscode-charts-blue', '#3794ff'),
  };
}

type Rgb = [number, number, number];

const VIRIDIS: Rgb[] = ['#440154', '#472d7b', '#3b528b', '#2c728e', '#21918c', '#28ae80', '#5ec962', '#addc30', '#fde725'].map(parseColor);

/** Sequential colour for t in [0, 1]. */
export function sequentialColor(t: number): string {
  const clamped = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0));
  const position = clamped * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(position));
  return toCss(mix(VIRIDIS[i], VIRIDIS[i + 1], position - i));
}

/** The sequential scale as CSS stops, for colour bars. */
export const SEQUENTIAL_STOPS: readonly string[] = VIRIDIS.map(toCss);

/**
 * Diverging colour for t in [-1, 1]: `negative` … a neutral midpoint … `positive`. The midpoint is
 * the background shifted a little toward the foreground, so zero reads as "nothing" in any theme
 * while cells stay visible against the page.
 */
export function divergingColor(t: number, theme: ChartsTheme): string {
  const clamped = Math.min(1, Math.max(-1, Number.isFinite(t) ? t : 0));
  const middle = divergingMidpoint(theme);
  const end = parseColor(clamped >= 0 ? theme.positive : theme.negative);
  return toCss(mix(middle, end, Math.abs(clamped)));
}

export function divergingStops(theme: ChartsTheme): string[] {
  return [theme.negative, toCss(divergingMidpoint(theme)), theme.positive].map((color) => toCss(parseColor(color)));
}

/** Whether the theme's background is dark (by relative luminance). */
export function isDark(theme: ChartsTheme): boolean {
  const [r, g, b] = parseColor(theme.background);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b < 128;
}

function divergingMidpoint(theme: ChartsTheme): Rgb {
  return mix(parseColor(theme.background), parseColor(theme.foreground), 0.12);
}

function mix(a: Rgb, b: Rgb, t: number): Rgb {
  return [0, 1, 2].map((i) => Math.round(a[i] + (b[i] - a[i]) * t)) as Rgb;
}

function toCss([r, g, b]: Rgb): string {
  return `rgb(${r}, ${g}, ${b})`;
}

/** Parses #rgb, #rrggbb, #rrggbbaa and rgb()/rgba(); anything else is mid-grey. */
export function parseColor(color: string): Rgb {
  const hex = /^#([0-9a-f]{3,8})$/i.exec(color.trim());
  if (hex) {
    const digits = hex[1].length <= 4 ? [...hex[1].slice(0, 3)].map((d) => d + d).join('') : hex[1].slice(0, 6);
    return [0, 2, 4].map((i) => parseInt(digits.slice(i, i + 2), 16)) as Rgb;
  }
  const rgb = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/i.exec(color.trim());
  if (rgb) return [rgb[1], rgb[2], rgb[3]].map(Number) as Rgb;
  return [128, 128, 128];
}
