/**
 * The profile dashboard's charts. Each is a function from profile data and a theme to a Chart on
 * the given canvas; the caller destroys it (e.g. before redrawing on a theme change).
 */
export { chartsTheme, divergingColor, sequentialColor, type ChartsTheme } from './colors';
export { coActivationHeatmap, differenceHeatmap, usageHeatmap } from './heatmaps';
export { adaptiveGatingChart, entropyChart, expertUsageBars } from './series';
export { eepSearchChart, rowSizeHistogram, sweepChart } from './panelCharts';
