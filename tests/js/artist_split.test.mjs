// The studio's split rules (frontend/lib/artist.js): shares that always add up to 100 % as collaborators join,
// leave or have their share changed, in whole bps with the rounding to the primary artist; and a track is never
// registered without a title. Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { TOTAL_BPS, addShare, normalise, parsePct, pctText, removeShare, setShare, titleProblem } from "../../frontend/lib/artist.js";

const sum = (xs) => xs.reduce((a, b) => a + b, 0);

test("a collaborator joins with an equal share and the others keep their proportions", () => {
  assert.deepEqual(addShare([10_000]), [5000, 5000]);
  assert.deepEqual(addShare([5000, 5000]), [3334, 3333, 3333]);
  assert.deepEqual(addShare([6000, 4000]), [4000, 2667, 3333]);
  let bps = [10_000];
  for (let n = 2; n <= 16; n++) {
    bps = addShare(bps);
    assert.equal(bps.length, n);
    assert.equal(sum(bps), TOTAL_BPS);
    assert.ok(bps.every((b) => Number.isInteger(b) && b > 0), bps);
  }
});

test("setting a collaborator's share: the primary artist takes what is left; the typed share stays as typed", () => {
  assert.deepEqual(setShare([5000, 5000], 1, 4000), [6000, 4000]);
  assert.deepEqual(setShare([3334, 3333, 3333], 1, 5000), [1667, 5000, 3333]);
  assert.deepEqual(setShare([3400, 3600, 3000], 1, 3000), [4000, 3000, 3000]);
  // not enough left for the primary: it gets 0 (flagged by the validation) and the others give in proportion
  assert.deepEqual(setShare([2000, 3000, 5000], 2, 9000), [0, 1000, 9000]);
  for (const v of [1, 333, 3333, 9999]) assert.equal(sum(setShare([2000, 3000, 5000], 2, v)), TOTAL_BPS);
});

test("setting the primary's share rebalances the collaborators in proportion; clamped; a lone artist keeps 100 %", () => {
  assert.deepEqual(setShare([6000, 3000, 1000], 0, 4000), [4000, 4500, 1500]);
  assert.deepEqual(setShare([1667, 5000, 3333], 0, 4000), [4000, 3600, 2400]);
  // the others all at 0: they share the rest equally
  assert.deepEqual(setShare([10_000, 0, 0], 0, 4000), [4000, 3000, 3000]);
  assert.deepEqual(setShare([5000, 5000], 0, 12_000), [10_000, 0]);
  assert.deepEqual(setShare([5000, 5000], 0, -5), [0, 10_000]);
  assert.deepEqual(setShare([10_000], 0, 3000), [10_000]);
});

test("a collaborator leaving gives their share back in proportion", () => {
  assert.deepEqual(removeShare([2500, 5000, 2500], 2), [3333, 6667]);
  assert.deepEqual(removeShare([1667, 5000, 3333], 2), [2500, 7500]);
  assert.deepEqual(removeShare([5000, 5000], 1), [10_000]);
  assert.equal(sum(removeShare([3334, 3333, 3333], 0)), TOTAL_BPS);
});

test("normalise: whole bps summing to the total, leftovers to the largest remainders (the primary on ties)", () => {
  assert.deepEqual(normalise([1, 1, 1]), [3334, 3333, 3333]);
  assert.deepEqual(normalise([0, 0]), [5000, 5000]);
  assert.deepEqual(normalise([NaN, -3, 2]), [0, 0, 10_000]);
  assert.deepEqual(normalise([]), []);
});

test("typed percentages: 0..100 with at most two decimals, else refused", () => {
  assert.equal(parsePct("12.5"), 1250);
  assert.equal(parsePct("33.33"), 3333);
  assert.equal(parsePct(".5"), 50);
  assert.equal(parsePct("100"), 10_000);
  for (const bad of ["", "abc", "100.01", "101", "-1", "1e2", "12.345", "0x10"]) assert.equal(parsePct(bad), null, bad);
  assert.equal(pctText(3333), "33.33");
  assert.equal(pctText(5000), "50");
});

test("a track without a title is refused with a sentence that says why", () => {
  assert.match(titleProblem(""), /Give the track a title/);
  assert.match(titleProblem("   \t"), /Give the track a title/);
  assert.match(titleProblem("x".repeat(121)), /up to 120 characters \(this one has 121\)/);
  assert.equal(titleProblem("Night Bus"), null);
});
