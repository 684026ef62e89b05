const m = require(process.argv[2]);
const pairs = [['uncurl', 'uncurl (unaligned)'], ['uncurl', 'random'], ['uncurl', 'frequency']];
for (const d of Object.keys(m.rows)) {
  const out = [];
  for (const [a, b] of pairs) {
    const x = m.rows[d][a], y = m.rows[d][b];
    const diff = x.map((v, i) => v - y[i]);
    const n = diff.length, mean = diff.reduce((s, v) => s + v, 0);
    // rows are loss shares (sum = loss), so the difference of losses is the sum; interval from the per-row spread
    const mu = mean / n, sd = Math.sqrt(diff.reduce((s, v) => s + (v - mu) ** 2, 0) / (n - 1));
    out.push(`${a} − ${b} ${mean >= 0 ? '+' : ''}${mean.toFixed(3)} ± ${(1.96 * sd * Math.sqrt(n)).toFixed(3)}`);
  }
  console.log(`- ${d}: ${out.join('; ')}`);
}
