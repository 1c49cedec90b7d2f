// A denoiser that runs on onnxruntime-node, driven by scorefield's Heun sampler:
//
//   npm run example:onnx          (node --import tsx examples/onnx-sampling.ts)
//
// The model is built here (examples/gaussian-onnx.ts, with onnx-proto): the exact denoiser of
// Gaussian data N(mu, 0.5^2 I) in 6 dimensions, with sigma as an input. onnxDenoiser hands the
// sampler's batch to the model as a float32 tensor over the same array and gives the output
// tensor's array back, with no copies. For this data the probability-flow ODE has a closed form,
// x(0) = mu + s / sqrt(s^2 + sigma0^2) (x(sigma0) - mu), so the printed error is the sampler's
// discretisation error alone (second order: 4x smaller for twice the steps).
import * as ort from 'onnxruntime-node';
import { onnxDenoiser, randn, sampleHeun, schedules } from '../lib/index';
import { gaussianDenoiserModel } from './gaussian-onnx';

async function main() {
  const d = 6;
  const mu = Float32Array.from({ length: d }, (_, k) => 0.5 * k - 1);
  const s2 = 0.25;
  const session = await ort.InferenceSession.create(gaussianDenoiserModel(mu, s2));
  const denoiser = onnxDenoiser(ort.Tensor, session, { shape: [d], sigmaShape: 'batch1' });
  const x0 = randn(64 * d, { seed: 7, dim: d }).map((v) => v * 20);
  for (const steps of [40, 80]) {
    const x = await sampleHeun(denoiser, x0, schedules.karrasSigmas(steps, { sigmaMax: 20 }), { dim: d });
    let err = 0;
    for (let i = 0; i < x.length; i++) {
      const m = mu[i % d];
      err = Math.max(err, Math.abs(x[i] - (m + Math.sqrt(s2 / (s2 + 400)) * (x0[i] - m))));
    }
    console.log(`${steps} Heun steps (${2 * steps - 1} ONNX runs): largest error against the closed form ${err.toExponential(2)}`);
  }
}
main();
