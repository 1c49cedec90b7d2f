/**
 * scorefield: the mathematics of score-based diffusion models on the CPU.
 * @packageDocumentation
 */
export * from './errors';
export { capabilities, setThreads, setSimdLevel, setMemoryLimit, floatingPointStatus, setFlushDenormals, setPruning, setScreening } from './runtime';
export type { Capabilities, SimdLevel, FloatingPointStatus } from './runtime';
export {
  perturb,
  perturbAsync,
  conditionalScore,
  conditionalScoreAsync,
  convert,
  convertAsync,
  velocityTarget,
  velocityTargetAsync,
  dsmLoss,
  dsmLossAsync,
  randn,
  randnAsync,
} from './targets';
export type { Parameterization, PerSample, DsmWeighting, DsmLossOptions, DsmLossResult, RandnOptions } from './targets';
export { ReferenceSet, stableTargets, stableTargetsAsync } from './estimator';
export type { EstimateStats, EstimateOutput, EstimateOptions, EstimateResult, PartialState, PartialOptions, StableTargetOptions, SampleOptions, SampleResult, ReferenceSetOptions } from './estimator';
export { gaussian, poisson, radial, poissonRadii, kernelScales } from './kernels';
export type { Kernel, GaussianKernel, PoissonKernel, RadialKernel, KernelMethods, DrawOptions } from './kernels';
export {
  eulerStep,
  eulerStepAsync,
  heunStep,
  heunStepAsync,
  eulerMaruyamaStep,
  eulerMaruyamaStepAsync,
  langevinStep,
  langevinStepAsync,
  churnStep,
  churnStepAsync,
} from './steps';
export type { NoiseOptions, StepOptions } from './steps';
export { sampleEuler, sampleHeun, sampleEulerMaruyama, sampleLangevin, fromEps, fromV, fromScore, fromSchedule } from './samplers';
export type { Denoiser, Model, SamplerOptions, HeunOptions, LangevinOptions, ChurnOptions } from './samplers';
export { EulerDiscreteScheduler, HeunDiscreteScheduler, diffusersSigmas } from './diffusers';
export { onnxDenoiser } from './onnx';
export type { OnnxDenoiserOptions, OnnxSessionLike, OnnxTensorConstructor, OnnxTensorLike } from './onnx';
export type { DiffusersSchedulerConfig, SchedulerStepOutput, BetaSchedule, PredictionType, TimestepSpacing } from './diffusers';
import * as schedules from './schedules';
export { schedules };
export type { Schedule, VpDiscreteSchedule, GridOptions } from './schedules';
import * as npy from './npy';
export { npy };
export type { NpyMatrix } from './npy';
import * as datasets from './datasets';
export { datasets };
export type { Dataset, ToyOptions, MnistOptions } from './datasets';
import * as objectives from './objectives';
export { objectives };
export type { ScoreModel, ObjectiveOptions, ObjectiveEstimate, ObjectiveComparison, HyvarinenOptions } from './objectives';
