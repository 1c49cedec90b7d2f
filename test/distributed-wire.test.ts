/**
 * The distributed estimator's payloads (lib/distributed/wire.ts) without Redis: encode and
 * decode into kept memory (Scratch) give the same values as into new memory, a lease's
 * memory is really reused, and the pool keeps at most its byte budget.
 */
import test from 'ava';
import { randn, ReferenceSet } from '../lib/index';
import { decodeQuery, decodeState, encodeQuery, encodeState, Scratch, ScratchPool } from '../lib/distributed/wire';

const d = 24;
const N = 300;
const Y = randn(N * d, { seed: 21 });
const ref = new ReferenceSet(Y, d);

test('queries and states decode into a scratch with the same values as into new memory, reusing its memory', (t) => {
  const B = 5;
  const x = randn(B * d, { seed: 22 });
  const sigma = Float32Array.from({ length: B }, (_, i) => 0.2 + i);
  const payload = encodeQuery({ x, batch: B, dim: d, sigma, alpha: null });
  const kept = new Scratch();
  const again = encodeQuery({ x, batch: B, dim: d, sigma, alpha: null }, kept);
  t.true(Buffer.compare(payload, again) === 0, 'the query payload encoded into a scratch differs');
  t.is(again.buffer, kept.bytes(0), 'the payload is not in the scratch');

  const into = new Scratch();
  const a = decodeQuery(payload, B, d);
  const b = decodeQuery(payload, B, d, into);
  t.deepEqual(Array.from(b.x), Array.from(a.x));
  t.deepEqual(Array.from(b.sigma!), Array.from(sigma));
  t.is(b.alpha, null);
  t.is(b.x.buffer, into.bytes(0));
  t.is(b.sigma!.buffer, into.bytes(0));

  const st = ref.estimatePartial(x, { sigma: 0.7 });
  const bytes = encodeState(st);
  const viaScratch = encodeState(st, new Scratch());
  t.true(Buffer.compare(bytes, viaScratch) === 0, 'the state payload encoded into a scratch differs');
  const s1 = decodeState(bytes, B, d, true, N);
  const s2 = decodeState(bytes, B, d, true, N, into);
  for (const k of ['origin', 'max', 'sum', 'sumSq', 'sumYY', 'weighted'] as const) {
    t.deepEqual(Array.from(s2[k]!), Array.from(st[k]!), `${k} differs through a scratch`);
    t.deepEqual(Array.from(s1[k]!), Array.from(st[k]!), `${k} differs through new memory`);
    t.is(s2[k]!.buffer, into.bytes(0), `${k} is not in the scratch`);
    t.is(s2[k]!.byteOffset % 8, 0);
  }
  // the same scratch used again: the earlier views see the new values (a lease ends first)
  const other = ref.estimatePartial(randn(B * d, { seed: 23 }), { sigma: 0.7 });
  const s3 = decodeState(encodeState(other), B, d, true, N, into);
  t.deepEqual(Array.from(s2.weighted!), Array.from(other.weighted!));
  t.is(s3.weighted!.buffer, s2.weighted!.buffer);
  // malformed payloads are refused through a scratch too
  t.throws(() => decodeState(bytes.subarray(0, bytes.length - 8), B, d, true, N, into), { code: 'ERR_SCOREFIELD_REMOTE' });
  t.throws(() => decodeQuery(payload, B + 1, d, into), { code: 'ERR_SCOREFIELD_REMOTE' });
});

test('a scratch pool leases distinct scratches and keeps at most its byte budget', (t) => {
  const pool = new ScratchPool(3000);
  const a = pool.take();
  const b = pool.take();
  t.not(a, b);
  a.bytes(1000);
  b.bytes(1500);
  pool.give(a, b);
  t.is(pool.keptBytes, 2500);
  const c = pool.take();
  const e = pool.take();
  t.true((c === a || c === b) && (e === a || e === b) && c !== e, 'the kept scratches are not handed out again');
  t.is(pool.keptBytes, 0);
  t.not(pool.take(), a);  // the pool is empty: a new one
  const big = new Scratch();
  big.bytes(4000);
  pool.give(big);  // over the budget on its own: dropped
  t.is(pool.keptBytes, 0);
  pool.give(c, e);
  t.is(pool.keptBytes, 2500);
  const f = new Scratch();
  f.bytes(600);
  pool.give(f);  // 2500 + 600 > 3000: dropped
  t.is(pool.keptBytes, 2500);
});
