// One mapping from an embedding failure to its label (issue 13), used by the encoder worker (fetch
// failure metrics) and by `ctrserve warm` (its summary).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { warmFailureReason } from '../src/batch/warm.ts'
import { failureReason } from '../src/embedding/failure-reason.ts'
import { CtrError } from '../src/errors.ts'

test('fetcher reason first, then the catalog code; warm adds encoder/other', () => {
  const fetched = new CtrError('FETCH_FAILED', ['timeout'], { cause: { reason: 'timeout' } })
  // Across the thread boundary the class is gone but cause.reason stays.
  const crossed = new Error('image fetch failed: http-4xx', { cause: { reason: 'http-4xx' } })
  assert.equal(failureReason(fetched), 'timeout')
  assert.equal(failureReason(crossed), 'http-4xx')
  assert.equal(failureReason(new CtrError('IMAGE_INVALID', ['truncated'])), 'invalid-image')
  assert.equal(failureReason(new CtrError('FETCH_REFUSED', ['scheme'])), 'refused')
  assert.equal(failureReason(new Error('x')), undefined)
  assert.equal(failureReason('not an error'), undefined)
  assert.equal(warmFailureReason(crossed), 'http-4xx')
  assert.equal(warmFailureReason(new Error('image encoder worker died: exit code 1')), 'encoder')
  assert.equal(warmFailureReason(new Error('something else')), 'other')
})
