import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allocateExperts } from '../../../server/src/plan/methods/layerBudget';

test('a global expert budget goes where removing experts costs least', () => {
  // Layer 0 loses nothing down to 2 experts; layer 1 pays 1 nat per expert removed.
  const curves = [
    { layer: 0, numExperts: 4, minimum: 1, cost: [NaN, 5, 1, 1, 1] },
    { layer: 1, numExperts: 4, minimum: 1, cost: [NaN, 4, 3, 2, 1] },
  ];
  assert.deepEqual(allocateExperts(curves, 6), { 0: 2, 1: 4 });
  assert.deepEqual(allocateExperts(curves, 5), { 0: 2, 1: 3 });
  assert.deepEqual(allocateExperts(curves, 8), { 0: 4, 1: 4 });
  assert.deepEqual(allocateExperts(curves, 2), { 0: 1, 1: 1 });
  assert.throws(() => allocateExperts(curves, 1), /not in 2\.\.8/);
});

test('a curve where keeping more costs more (noise) is read as flat, never as a gain from removing', () => {
  const curves = [
    { layer: 3, numExperts: 3, minimum: 2, cost: [NaN, NaN, 0.9, 1.0] },
    { layer: 5, numExperts: 3, minimum: 2, cost: [NaN, NaN, 1.5, 1.0] },
  ];
  assert.deepEqual(allocateExperts(curves, 5), { 3: 2, 5: 3 });
});
