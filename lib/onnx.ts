/**
 * Running an ONNX model (onnxruntime-node, onnxruntime-web) as the denoiser of scorefield's
 * samplers. scorefield does not depend on onnxruntime: the caller hands in its `Tensor` class
 * and an `InferenceSession`, typed here by the little this adapter uses of them. The batch goes
 * to the model without a copy (a float32 tensor over the sampler's own array), and the model's
 * output tensor comes back without a copy (its Float32Array data is the denoiser's result).
 */
import { ScorefieldDenoiserError } from './errors';
import * as is from './is';
import { fromEps, fromScore, fromV, type Denoiser } from './samplers';

/** What the adapter needs of an onnxruntime tensor. */
export interface OnnxTensorLike {
  readonly data: unknown;
  readonly dims: readonly number[];
}

/** onnxruntime's `Tensor` constructor, float32 form: `new Tensor('float32', data, dims)`. */
export type OnnxTensorConstructor = new (type: 'float32', data: Float32Array, dims: readonly number[]) => OnnxTensorLike;

/** What the adapter needs of an onnxruntime `InferenceSession`. */
export interface OnnxSessionLike {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, OnnxTensorLike>): Promise<Record<string, OnnxTensorLike>>;
}

export interface OnnxDenoiserOptions {
  /** Per-sample shape of the model's data input (e.g. [4, 64, 64]); the batch is prepended. */
  shape: readonly number[];
  /** Name of the data input (default: the session's first input). */
  input?: string;
  /** Name of the noise-level input (default: the session's second input). */
  sigmaInput?: string;
  /** Shape of the noise-level input: 'batch' ([B], default), 'batch1' ([B, 1]) or 'scalar' ([1]). */
  sigmaShape?: 'batch' | 'batch1' | 'scalar';
  /** Name of the output (default: the session's first output). */
  output?: string;
  /** What the model predicts at (x, sigma), alpha = 1: 'x0' (default: a denoiser), 'eps', 'v' or 'score'. */
  parameterization?: 'x0' | 'eps' | 'v' | 'score';
}

/**
 * A Denoiser for sampleHeun / sampleEuler / the other samplers from an ONNX session whose
 * inputs are the batch (B x shape) and its noise level sigma.
 *
 *     const session = await ort.InferenceSession.create('denoiser.onnx');
 *     const x = await sampleHeun(onnxDenoiser(ort.Tensor, session, { shape: [784] }), x0, sigmas, { dim: 784 });
 */
export function onnxDenoiser(Tensor: OnnxTensorConstructor, session: OnnxSessionLike, options: OnnxDenoiserOptions): Denoiser {
  if (typeof Tensor !== 'function') throw is.typeError("onnxruntime's Tensor class", 'Tensor', Tensor);
  if (!session || typeof (session as OnnxSessionLike).run !== 'function') throw is.typeError('an onnxruntime InferenceSession', 'session', session);
  const o = is.options<OnnxDenoiserOptions>(options, 'options');
  if (!Array.isArray(o.shape) || o.shape.length === 0) throw is.typeError('a non-empty array of dimensions', 'options.shape', o.shape);
  const shape = o.shape.map((v, i) => is.integer(v, `options.shape[${i}]`, 1));
  const dim = shape.reduce((a, b) => a * b, 1);
  const input = o.input ?? session.inputNames[0];
  const sigmaInput = o.sigmaInput ?? session.inputNames[1];
  const output = o.output ?? session.outputNames[0];
  for (const [name, v] of [['options.input', input], ['options.sigmaInput', sigmaInput]] as const) {
    if (typeof v !== 'string' || !session.inputNames.includes(v)) throw is.typeError(`one of the session's inputs (${session.inputNames.join(', ')})`, name, v);
  }
  if (typeof output !== 'string' || !session.outputNames.includes(output)) {
    throw is.typeError(`one of the session's outputs (${session.outputNames.join(', ')})`, 'options.output', output);
  }
  const sigmaShape = o.sigmaShape ?? 'batch';
  if (!['batch', 'batch1', 'scalar'].includes(sigmaShape)) throw is.typeError("'batch', 'batch1' or 'scalar'", 'options.sigmaShape', sigmaShape);
  const parameterization = o.parameterization ?? 'x0';
  if (!['x0', 'eps', 'v', 'score'].includes(parameterization)) throw is.typeError("'x0', 'eps', 'v' or 'score'", 'options.parameterization', parameterization);

  const model = async (x: Float32Array, sigma: number): Promise<Float32Array> => {
    if (x.length % dim !== 0) throw new ScorefieldDenoiserError(`Expected a batch of samples of ${dim} values for the ONNX model but received ${x.length} values`);
    const B = x.length / dim;
    const s = sigmaShape === 'scalar' ? Float32Array.of(sigma) : new Float32Array(B).fill(sigma);
    const feeds: Record<string, OnnxTensorLike> = {
      [input]: new Tensor('float32', x, [B, ...shape]), // over x itself: no copy
      [sigmaInput]: new Tensor('float32', s, sigmaShape === 'batch1' ? [B, 1] : sigmaShape === 'batch' ? [B] : [1]),
    };
    const out = (await session.run(feeds))[output];
    if (!out || !(out.data instanceof Float32Array) || out.data.length !== x.length) {
      throw new ScorefieldDenoiserError(`Expected the ONNX output ${output} to be a float32 tensor of ${x.length} values but received ${out ? is.describe(out.data) : 'none'}`);
    }
    return out.data; // the output tensor's own array: no copy
  };
  switch (parameterization) {
    case 'eps':
      return fromEps(model);
    case 'v':
      return fromV(model);
    case 'score':
      return fromScore(model);
    default:
      return model;
  }
}
