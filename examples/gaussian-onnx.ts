// ONNX models built with onnx-proto (protobufjs), for examples/onnx-sampling.ts and the tests: the exact denoiser of Gaussian
// data N(mu, s^2 I), D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu), with sigma as an input,
// and the same as an eps-prediction model of diffusers' kind, eps(x_in; sigma) with the scaled
// input x_in = x / sqrt(sigma^2 + 1), eps = (x - D(x; sigma)) / sigma.
import { onnx } from 'onnx-proto';

const F = onnx.TensorProto.DataType.FLOAT;

function value(name: string, dims: Array<number | string>): onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: F, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

function constant(name: string, values: ArrayLike<number>, dims: number[]): onnx.ITensorProto {
  return { name, dataType: F, dims, floatData: Array.from(values) };
}

function model(nodes: onnx.INodeProto[], inputs: onnx.IValueInfoProto[], output: onnx.IValueInfoProto, init: onnx.ITensorProto[]): Uint8Array {
  const m = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'scorefield tests',
    opsetImport: [{ domain: '', version: 13 }],
    graph: { name: 'gaussian_denoiser', node: nodes, input: inputs, output: [output], initializer: init },
  });
  return onnx.ModelProto.encode(m).finish();
}

const node = (op: string, inputs: string[], out: string): onnx.INodeProto => ({ opType: op, input: inputs, output: [out], name: out });

/** x [B, d], sigma [B, 1] -> denoised [B, d]. */
export function gaussianDenoiserModel(mu: Float32Array, s2: number): Uint8Array {
  const d = mu.length;
  return model(
    [
      node('Mul', ['sigma', 'sigma'], 'sigma2'),
      node('Add', ['sigma2', 's2'], 'den'),
      node('Div', ['s2', 'den'], 'ratio'),
      node('Sub', ['x', 'mu'], 'xc'),
      node('Mul', ['xc', 'ratio'], 'shrunk'),
      node('Add', ['shrunk', 'mu'], 'denoised'),
    ],
    [value('x', ['B', d]), value('sigma', ['B', 1])],
    value('denoised', ['B', d]),
    [constant('mu', mu, [d]), constant('s2', [s2], [1])],
  );
}

/**
 * x_in [B, d], sigma [B, 1] -> eps [B, d]. With `scaled` (diffusers' convention) x_in is
 * x / sqrt(sigma^2 + 1); without, x_in is x.
 */
export function gaussianEpsModel(mu: Float32Array, s2: number, scaled = true): Uint8Array {
  const d = mu.length;
  const unscale: onnx.INodeProto[] = scaled
    ? [node('Add', ['sigma2', 'one'], 'sigma2p1'), node('Sqrt', ['sigma2p1'], 'cin_inv'), node('Mul', ['x_in', 'cin_inv'], 'x')]
    : [node('Identity', ['x_in'], 'x')];
  return model(
    [
      node('Mul', ['sigma', 'sigma'], 'sigma2'),
      ...unscale,
      node('Add', ['sigma2', 's2'], 'den'),
      node('Div', ['s2', 'den'], 'ratio'),
      node('Sub', ['x', 'mu'], 'xc'),
      node('Mul', ['xc', 'ratio'], 'shrunk'),
      node('Add', ['shrunk', 'mu'], 'denoised'),
      node('Sub', ['x', 'denoised'], 'resid'),
      node('Div', ['resid', 'sigma'], 'eps'),
    ],
    [value('x_in', ['B', d]), value('sigma', ['B', 1])],
    value('eps', ['B', d]),
    [constant('mu', mu, [d]), constant('s2', [s2], [1]), constant('one', [1], [1])],
  );
}
