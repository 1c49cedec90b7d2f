// Score matching vs conditional score matching on a 2-d Gaussian mixture, with a family of
// linear score models s(x) = A x + b (docs/math.md section 2; issue 7).
//
//   node --import tsx examples/objectives.ts
//
// 1. CSM(theta) - SM(theta) is the same constant for every theta (the gap E[tr Cov(x0|x)] /
//    sigma^4), up to Monte-Carlo error, and CSM >= SM.
// 2. The SM estimate built on the self-normalized (ratio) estimator over N reference points is
//    biased; with the exact score of the mixture as the model (true SM = 0) the estimate is all
//    bias, and it shrinks like 1/N.
import { datasets, objectives, ReferenceSet, type ScoreModel } from '../lib/index';

const sigma = 0.3;
const K = 8, radius = 0.8, spread = 0.1; // datasets.gmm: 8 components N(mu_k, 0.1^2 I) on a circle

/** The exact score of the noised mixture: sum_k N(alpha mu_k, (spread^2 + sigma^2) I). */
const exactScore: ScoreModel = (x) => {
  const v = spread * spread + sigma * sigma;
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i += 2) {
    let wsum = 0, g0 = 0, g1 = 0;
    const l: number[] = [];
    for (let k = 0; k < K; k++) {
      const m0 = radius * Math.cos((2 * Math.PI * k) / K), m1 = radius * Math.sin((2 * Math.PI * k) / K);
      l.push(-((x[i] - m0) ** 2 + (x[i + 1] - m1) ** 2) / (2 * v));
    }
    const mx = Math.max(...l);
    for (let k = 0; k < K; k++) {
      const w = Math.exp(l[k] - mx);
      const m0 = radius * Math.cos((2 * Math.PI * k) / K), m1 = radius * Math.sin((2 * Math.PI * k) / K);
      wsum += w;
      g0 += (w * -(x[i] - m0)) / v;
      g1 += (w * -(x[i + 1] - m1)) / v;
    }
    out[i] = g0 / wsum;
    out[i + 1] = g1 / wsum;
  }
  return out;
};

const linear = (a: number, b: number): ScoreModel => (x) => x.map((v, i) => a * v + (i % 2 ? b : 0));

async function main(): Promise<void> {
  const data = new ReferenceSet(datasets.gmm({ n: 5000, seed: 1 }).data, 2);
  const f = (e: { value: number; stderr: number }) => `${e.value.toFixed(3)} +- ${e.stderr.toFixed(3)}`;

  console.log(`1. Linear models s(x) = a x + (0, b) on the 8-component mixture (5000 points), sigma = ${sigma}, 20000 draws`);
  console.log('   a      b      CSM                SM                 CSM - SM   gap (model-free)   CSM - SM - gap (per draw)');
  for (const [a, b] of [[0, 0], [-2, 0], [-5, 0.5], [-11, 0], [3, -1]]) {
    const r = await objectives.evaluate(linear(a, b), data, { sigma, samples: 20000, seed: 3 });
    console.log(
      `   ${String(a).padStart(3)}  ${b.toFixed(1).padStart(5)}   ${f(r.csm).padEnd(17)}  ${f(r.sm).padEnd(17)}  ${(r.csm.value - r.sm.value).toFixed(3).padStart(8)}   ${f(r.gap).padEnd(17)}  ${f(r.difference)}`,
    );
  }

  console.log('\n2. Bias of the SM estimate through the ratio estimator: the model is the exact mixture score (true SM = 0)');
  console.log('   reference points N   SM estimate (mean of 6 sets)   N x estimate');
  const draws = new ReferenceSet(datasets.gmm({ n: 20000, seed: 2 }).data, 2);
  for (const N of [25, 100, 400, 1600]) {
    let mean = 0;
    for (let r = 0; r < 6; r++) {
      const reference = new ReferenceSet(datasets.gmm({ n: N, seed: 100 + r }).data, 2);
      mean += (await objectives.sm(exactScore, draws, { sigma, samples: 4000, seed: 5, reference })).value / 6;
    }
    console.log(`   ${String(N).padStart(19)}   ${mean.toFixed(4).padStart(28)}   ${(N * mean).toFixed(1).padStart(12)}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
