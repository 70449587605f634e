// Fleet chaos run (issue 9 §7): a Redis Cluster (3 masters + 3 replicas), ctrserve instances as
// real processes, an image origin, all on loopback, under one open-loop load spread round robin over
// the instances in rotation. Faults one phase at a time; each phase reports requests, 5xx, p99, max,
// jobs by outcome and the time to recover. Saves bench/results/fleet.json + fleet.md.
//
//   flock /work/locks/bench.lock npx tsx bench/fleet/run.ts [--rate 20] [--phase-seconds 20]
//     [--instances 2] [--stop-seconds 70] [--drain-seconds 90]
//
// Job accounting (explicit): accepted = Σ jobs_total{outcome="queued"} over every process (a killed
// process counts with its last scrape, ≤ 1 s before the kill); lost = accepted − done − failed −
// expired − still in the queue at the end (job records in every partition of every encoder version,
// read from the cluster: an instance's depth gauge counts only its own versions). An enqueue whose
// reply timed out counts `unknown` (it may be queued): true lost lies in [lost, lost + unknown].
// The ground truth is also given: every new title and image URL the load sent, whether its vector
// is in the cluster at the end under the encoder version of the instance that received it, and if
// not, whether it is still a job, negatively cached, or nowhere, and from the per-key trace (every
// instance at LOG_LEVEL=debug logs each key's enqueue outcome and each job done, trace.ts) why:
// lost (acknowledged then gone, done but the vector gone, given up, or in the outbox of a killed
// process) or never offered / suppressed.
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Cluster } from 'ioredis'
import { loadBundle } from '../../src/bundle/load-bundle.ts'
import { embeddingKey } from '../../src/cache/keys.ts'
import { vectorToBuffer } from '../../src/cache/vector-codec.ts'
import { BUNDLE_DIR, SAMPLE_DIR } from '../../support/bundle.ts'
import { freePort } from '../../support/free-port.ts'
import { type ClusterNode, startRedisCluster } from '../../support/redis-cluster.ts'
import { sampleContexts, sampleItems } from '../../support/sample.ts'
import { startImageOrigin } from '../../support/image-origin.ts'
import { num, parseArgs } from '../lib/args.ts'
import { timeUntil } from '../lib/wait.ts'
import { type Body, newStats, runLoad, summarizePhase, type PhaseStats, type PhaseSummary } from '../chaos/load.ts'
import { type JobCounts, Fleet, type Instance, emptyCounts } from './fleet.ts'
import { countForeign, ownerPort, queueAtEnd, whereIs } from './cluster-keys.ts'
import { classify, LOST, type MissingClass, pathOf, readTraces } from './trace.ts'

const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0)
const LOST_DEFINITION = 'lost = the server took the input (its enqueue was acknowledged, or it was offered and not suppressed by the resend window or throttled by the per-client admission) and after the drain it has no vector, no job and no negative marker'

const args = parseArgs(process.argv.slice(2))
const RATE = num(args, 'rate', 20)
const PHASE_S = num(args, 'phase-seconds', 20)
const INSTANCES = num(args, 'instances', 2)
const STOP_S = num(args, 'stop-seconds', 70)
const DRAIN_S = num(args, 'drain-seconds', 90)
const PREFIX = 'fleet'
const PARTITIONS = 8
const RESULTS = resolve(import.meta.dirname, '../results')
const log = (m: string): void => { process.stderr.write(`[fleet ${new Date().toISOString().slice(11, 19)}] ${m}\n`) }
const hardStop = setTimeout(() => { log('hard time limit reached, exiting'); process.exit(2) }, 40 * 60_000)
hardStop.unref()
const loadAtStart = loadavg()
const runT0 = performance.now()
const atS = (t: number): number => Math.round((t - runT0) / 100) / 10

// ---- participants -------------------------------------------------------------------------------------
const bundleA = await loadBundle(BUNDLE_DIR)
const dirB = mkdtempSync(join(tmpdir(), 'ctrserve-bundle-b-'))
execFileSync('python3', [join(import.meta.dirname, 'make-bundle-b.py'), BUNDLE_DIR, dirB], { stdio: ['ignore', 'ignore', 'inherit'] })
const bundleB = await loadBundle(dirB)
const version = { A: bundleA.manifest.encoders.image.version, B: bundleB.manifest.encoders.image.version }
const textVersion = bundleA.manifest.encoders.text.version
log(`image encoder versions: A ${version.A}, B ${version.B}`)

const cluster = await startRedisCluster()
const admin: Cluster = cluster.client()
admin.on('error', () => undefined) // nodes are killed on purpose
await new Promise<void>((r) => { if (admin.status === 'ready') r(); else admin.once('ready', () => r()) })
const origin = await startImageOrigin(SAMPLE_DIR)
const envFor = (b: 'A' | 'B'): Record<string, string> => ({
  // debug: the queue's per-key trace (trace.ts); fastify's request lines come with it.
  REDIS_CLUSTER_NODES: cluster.seeds, REDIS_PREFIX: PREFIX, IMAGE_ALLOWED_HOSTS: '127.0.0.1', LOG_LEVEL: 'debug',
  EMBED_WORKERS: '1', BUDGET_MS: '200', QUEUE_PARTITIONS: String(PARTITIONS), MODEL_DIR: b === 'A' ? BUNDLE_DIR : dirB,
})
const fleet = new Fleet(envFor)
const ports = await Promise.all(Array.from({ length: INSTANCES }, () => freePort()))
log(`starting ${INSTANCES} instances`)
await fleet.start(INSTANCES, ports)

// ---- workload: 18 hot items, one new title per request, one new image every 5th ---------------------
const items = sampleItems(origin.baseUrl)
const contexts = sampleContexts()
const HOT = 300
interface Fresh { readonly key: string; readonly sentAt: number; readonly phase: string; readonly slot: number }
let currentPhase = 'warmup'
const fresh: Fresh[] = []
let seq = 0
let target: Instance | undefined
/** The new inputs each request carried, and the HTTP status each input's request got (none: no answer). */
const carried = new WeakMap<Body, string[]>()
const statusOf = new Map<string, number>()
function answered(r: { status: number; body: Body }): void {
  for (const key of carried.get(r.body) ?? []) statusOf.set(key, r.status)
}
function nextBody(extra: Array<Record<string, unknown>> = []): Body {
  const i = seq++
  const firstFresh = fresh.length
  target = fleet.pick()
  const v = version[target.bundle]
  const pick = (k: number): Record<string, unknown> => ({ ...items[(i * 7919 + k * 104_729) % HOT] })
  const list: Array<Record<string, unknown>> = Array.from({ length: 18 }, (_, k) => pick(k))
  const title = `fleet fresh title ${i}`
  list.push({ id: `ft${i}`, title })
  fresh.push({ key: embeddingKey(PREFIX, 'text', textVersion, title), sentAt: performance.now(), phase: currentPhase, slot: target.slot })
  if (i % 5 === 0) {
    const src = items[HOT + (i / 5) % (items.length - HOT)] as { image_url?: string }
    const url = `${src.image_url ?? ''}?n=${i}`
    list.push({ id: `fi${i}`, image_url: url })
    fresh.push({ key: embeddingKey(PREFIX, 'image', v, url), sentAt: performance.now(), phase: currentPhase, slot: target.slot })
  }
  const body = { context: contexts[i % contexts.length] as object, items: [...list, ...extra] }
  carried.set(body, fresh.slice(firstFresh).map((f) => f.key))
  return body
}
const url = (): string => (target ?? fleet.pick()).proc.url

// ---- helpers ------------------------------------------------------------------------------------------
async function presentCount(keys: readonly string[]): Promise<number> {
  const replies = await Promise.all(keys.map((k) => admin.exists(k).catch(() => 0)))
  return replies.reduce((a, b) => a + b, 0)
}

/** Probe titles whose vectors are only in L2 (never requested before), on `node`'s slots. */
async function seedProbes(name: string, node: ClusterNode, count: number): Promise<string[]> {
  // The slot map after any earlier failover.
  await new Promise<void>((r) => admin.refreshSlotsCache(() => r()))
  const out: string[] = []
  const vec = vectorToBuffer(new Float32Array(bundleA.manifest.oov.text.dim).fill(0.01))
  for (let i = 0; out.length < count; i++) {
    const title = `fleet probe ${name} ${i}`
    if (ownerPort(admin, embeddingKey(PREFIX, 'text', textVersion, title)) === node.port) out.push(title)
  }
  await Promise.all(out.map((title) => admin.set(embeddingKey(PREFIX, 'text', textVersion, title), vec, 'EX', 3600)))
  await Promise.all(admin.nodes('master').map((n) => n.call('WAIT', '1', '2000').catch(() => 0)))
  return out
}

interface PhaseResult extends PhaseSummary {
  readonly startedAtS: number
  readonly fault: string
  readonly notes: Record<string, unknown>
  readonly jobs: JobCounts
  readonly readyz: { polls: number; not200: number }
}
const results: PhaseResult[] = []

/** Load in 5 s chunks until `inject` has finished and at least `minSeconds` passed. */
async function phase(name: string, fault: string, minSeconds: number, inject: (stats: PhaseStats, t0: number) => Promise<Record<string, unknown>>,
  body: () => Body = () => nextBody(), onLastSource?: (s: string, body: Body) => void): Promise<PhaseResult> {
  log(`phase ${name}: ${fault}`)
  currentPhase = name
  await fleet.scrapeAll()
  const before = fleet.totals()
  const stats = newStats(name, minSeconds)
  const t0 = performance.now()
  const readyz = { polls: 0, not200: 0 }
  let injecting = true
  const poller = (async () => {
    while (injecting) {
      for (const inst of fleet.instances.filter((i) => i.inRotation)) {
        readyz.polls++
        const s = await fetch(`${inst.proc.url}/readyz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status, () => 0)
        if (s !== 200) readyz.not200++
      }
      await sleep(500)
    }
  })()
  const notesP = inject(stats, t0).finally(() => { injecting = false })
  while (injecting || performance.now() - t0 < minSeconds * 1000) {
    await runLoad(stats, {
      url, rate: RATE, seconds: 5, body: () => body(),
      onResponse: (r: { status: number; sources: string[]; body: Body }) => {
        answered(r)
        const s = r.sources[r.sources.length - 1]
        if (s && onLastSource) onLastSource(s, r.body)
      },
    })
  }
  const notes = await notesP
  await poller
  await fleet.scrapeAll()
  const after = fleet.totals()
  const jobs = emptyCounts()
  for (const k of Object.keys(jobs) as Array<keyof JobCounts>) jobs[k] = after[k] - before[k]
  const r: PhaseResult = { ...summarizePhase(stats), startedAtS: atS(t0), seconds: Math.round((performance.now() - t0) / 100) / 10, fault, notes, jobs, readyz }
  results.push(r)
  log(`  sent ${r.sent}, 5xx ${r.fiveXx}, conn errors ${r.connectionErrors}, p99 ${r.latency.p99} ms, max ${r.latency.max} ms, jobs ${JSON.stringify(jobs)} ${JSON.stringify(notes)}`)
  return r
}

/**
 * Once `armed()` (the fault injected), bodies carry one probe title (last item); the first `l2`
 * answer for a probe marks recovery. Requests sent before the fault carry no probe.
 */
function probing(probes: string[], stats: { firstProbeL2Ms?: number; probeOov: number }, faultAt: () => number | undefined): { body: () => Body; onSource: (s: string, body: Body) => void } {
  let at = 0
  return {
    body: () => (faultAt() === undefined ? nextBody() : nextBody([{ id: `probe${at}`, title: probes[at++ % probes.length] }])),
    onSource: (s, body) => {
      const t0 = faultAt()
      if (t0 === undefined || !String(body.items[body.items.length - 1]?.id).startsWith('probe')) return
      if (s === 'l2' && stats.firstProbeL2Ms === undefined) stats.firstProbeL2Ms = Math.round(performance.now() - t0)
      if (s === 'oov') stats.probeOov++
    },
  }
}

// ---- warm-up and phases ------------------------------------------------------------------------------
log(`warm-up at ${RATE} req/s`)
const warmup = newStats('warmup', 15)
await runLoad(warmup, { url, rate: RATE, seconds: 15, body: () => nextBody(), onResponse: answered })
log(`  warm-up: sent ${warmup.sent}, statuses ${JSON.stringify(warmup.statuses)}, conn errors ${warmup.connectionErrors}`)
await sleep(3000)

await phase('baseline', 'none', PHASE_S, async () => ({}))

for (const kind of ['master-killed', 'node-restarted'] as const) {
  const victim = (await cluster.masters())[kind === 'master-killed' ? 0 : 1] as ClusterNode
  const probes = await seedProbes(kind, victim, 1500)
  const probeStats: { firstProbeL2Ms?: number; probeOov: number } = { probeOov: 0 }
  let faultAt: number | undefined
  const p = probing(probes, probeStats, () => faultAt)
  const fault = kind === 'master-killed'
    ? `master :${victim.port} SIGKILL at phase start (its replica is promoted); probe titles on its slots`
    : `master :${victim.port} SIGKILL and started again at once (AOF); probe titles on its slots`
  await phase(kind, fault, PHASE_S, async () => {
    faultAt = performance.now()
    await victim.kill()
    if (kind === 'node-restarted') await victim.start()
    const promoted = kind === 'master-killed'
      ? await timeUntil(async () => { const m = await cluster.masters(); return m.length === 3 && !m.some((n) => n.port === victim.port) }, 30_000)
      : undefined
    const promotedMs = promoted === undefined ? undefined : Math.round(performance.now() - (faultAt ?? 0))
    await timeUntil(async () => probeStats.firstProbeL2Ms !== undefined, 30_000, 50)
    return { replicaPromotedAfterMs: promotedMs, probeL2ResumedAfterMs: probeStats.firstProbeL2Ms, probeOovAnswers: probeStats.probeOov }
  }, p.body, p.onSource)
  if (kind === 'master-killed') {
    // The dead master comes back as a replica of the promoted one.
    await victim.start()
    await cluster.waitHealthy(60_000)
  }
}

{
  const inst = fleet.instances[0] as Instance
  await phase('consumer-starved', `instance ${inst.slot} SIGSTOP for ${STOP_S} s (out of rotation; its batches outlast the claim time), then SIGCONT`, STOP_S + 10, async () => {
    const stoppedAt = performance.now()
    // The jobs waiting or in flight at the freeze: inputs of the last 30 s not yet embedded.
    const recent = [...new Set(fresh.filter((f) => f.sentAt >= stoppedAt - 30_000).map((f) => f.key))]
    const present = await Promise.all(recent.map((k) => admin.exists(k).catch(() => 0)))
    const backlog = recent.filter((_, i) => present[i] === 0)
    inst.inRotation = false
    await sleep(200)
    inst.proc.child.kill('SIGSTOP')
    const embeddedMs = await timeUntil(async () => (await presentCount(backlog)) === backlog.length, (STOP_S - 1) * 1000, 1000)
    const remaining = backlog.length - await presentCount(backlog)
    await sleep(Math.max(0, STOP_S * 1000 - (performance.now() - stoppedAt)))
    inst.proc.child.kill('SIGCONT')
    const readmittedMs = await fleet.readmit(inst)
    const after = await timeUntil(async () => (await presentCount(backlog)) === backlog.length, 60_000, 1000)
    return { backlogAtStop: backlog.length, backlogEmbeddedWhileStoppedAfterMs: embeddedMs, notEmbeddedAtSigcont: remaining, readyAfterSigcontMs: readmittedMs, backlogEmbeddedAfterSigcontMs: after }
  })
}

await phase('rolling-deploy', `each instance in turn: out of rotation, SIGTERM, restarted on bundle B (image encoder ${version.B})`, PHASE_S, async () => {
  const restarts: number[] = []
  for (const inst of fleet.instances) restarts.push((await fleet.restart(inst, 'SIGTERM', 'B')).downMs)
  return { restartDownMs: restarts }
})

{
  const inst = fleet.instances[fleet.instances.length - 1] as Instance
  const burst = Array.from({ length: 100 }, (_, i) => `${(items[HOT + i] as { image_url?: string }).image_url ?? ''}?burst=${i}`)
  const burstKeys = burst.map((u) => embeddingKey(PREFIX, 'image', version.B, u))
  await phase('instance-kill-9', `instance ${inst.slot} SIGKILL 1 s after a burst of 100 new images (origin slow: 2 s), restarted`, PHASE_S, async () => {
    origin.delayMs = 2000
    const res = await fetch(`${inst.proc.url}/predict`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ items: burst.map((image_url, i) => ({ id: `b${i}`, image_url })) }) })
    for (const k of burstKeys) fresh.push({ key: k, sentAt: performance.now(), phase: currentPhase, slot: inst.slot })
    for (const k of burstKeys) statusOf.set(k, res.status)
    await sleep(1000)
    const killedAt = performance.now()
    const restart = fleet.restart(inst, 'SIGKILL', 'B')
    origin.delayMs = 0
    const { downMs } = await restart
    const allMs = await timeUntil(async () => (await presentCount(burstKeys)) === burstKeys.length, 120_000, 1000)
    const embeddedAfterKillMs = allMs === undefined ? undefined : Math.round(performance.now() - killedAt)
    return { burstStatus: res.status, restartDownMs: downMs, burstEmbeddedAfterKillMs: embeddedAfterKillMs, burstMissing: burstKeys.length - await presentCount(burstKeys) }
  })
}

// ---- drain and accounting -------------------------------------------------------------------------------
log(`drain: no load, up to ${DRAIN_S} s until the queue is empty and no new vector appeared for 15 s`)
const freshKeys = [...new Set(fresh.map((f) => f.key))]
let embedded = await presentCount(freshKeys)
let stableSince = performance.now()
const drainMs = await timeUntil(async () => {
  await fleet.scrapeAll()
  const now = await presentCount(freshKeys)
  if (now !== embedded) { embedded = now; stableSince = performance.now() }
  return fleet.lastDepth === 0 && performance.now() - stableSince >= 15_000
}, DRAIN_S * 1000, 1000)
await sleep(3000)
await fleet.scrapeAll()
const totals = fleet.totals()
const queueEnd = await queueAtEnd(admin, PREFIX)
const waiting = Object.values(queueEnd.jobsByVersion).reduce((a, b) => a + b, 0)
const lost = totals.queued - totals.done - totals.failed - totals.expired - waiting
embedded = await presentCount(freshKeys)
// Inputs that never got a vector: where they are now (a job, a negative marker, nowhere).
const missing: Array<Fresh & { where: 'queued' | 'negative' | 'nowhere' }> = []
const seen = new Set<string>()
for (const f of fresh) {
  if (seen.has(f.key)) continue
  seen.add(f.key)
  if (await admin.exists(f.key).catch(() => 0)) continue
  missing.push({ ...f, where: await whereIs(admin, PREFIX, f.key, PARTITIONS) })
}
const foreign = await countForeign(admin, PREFIX, version, 50)
await fleet.stop()
// Every process has exited: its trace is complete.
const traces = readTraces(fleet.outputs())
const byClass: Record<string, number> = {}
const byClassAndPhase: Record<string, Record<string, number>> = {}
const missingList = missing.map((m) => {
  const cls = classify(m.where, traces.get(m.key), statusOf.get(m.key))
  byClass[cls] = (byClass[cls] ?? 0) + 1
  const row = byClassAndPhase[cls] ??= {}
  row[m.phase] = (row[m.phase] ?? 0) + 1
  return { key: m.key, sentAtS: atS(m.sentAt), phase: m.phase, instance: m.slot, httpStatus: statusOf.get(m.key) ?? null, class: cls, lost: LOST.has(cls), trace: traces.get(m.key) ?? null }
})
const lostInputs = missingList.filter((m) => m.lost).length
// Every new input's enqueue history, by the phase that sent it.
const paths: Record<string, Record<string, number>> = {}
const firstSend = new Map<string, Fresh>()
for (const f of fresh) if (!firstSend.has(f.key)) firstSend.set(f.key, f)
for (const [key, f] of firstSend) {
  const row = paths[pathOf(traces.get(key))] ??= {}
  row[f.phase] = (row[f.phase] ?? 0) + 1
}
const phaseStarts = Object.fromEntries(results.map((r) => [r.phase, r.startedAtS]))
admin.disconnect()
await origin.close()
await cluster.stop()
rmSync(dirB, { recursive: true, force: true })

const out = {
  generatedAt: new Date().toISOString(), node: process.version, rate: RATE, instances: INSTANCES, itemsPerRequest: '19-21', budgetMs: 200,
  loadAverage: { atStart: loadAtStart, atEnd: loadavg() }, queue: 'the queue of main at the time of the run (see the README)',
  phases: results,
  accounting: { ...totals, inQueueAtEnd: waiting, queueAtEnd: queueEnd, depthGaugeAtEnd: fleet.lastDepth, drainMs, lost,
    formula: 'lost = queued − done − failed − expired − inQueueAtEnd; true lost in [lost, lost + unknown]' },
  groundTruth: {
    freshInputsSent: freshKeys.length, embeddedAtEnd: embedded, notEmbedded: freshKeys.length - embedded, lost: lostInputs,
    lostDefinition: LOST_DEFINITION, enqueuePaths: paths, notEmbeddedByClass: byClass, notEmbeddedByClassAndPhase: byClassAndPhase, phaseStartsS: phaseStarts, notEmbedded_: missingList,
  },
  foreignVersionVectors: foreign,
}
mkdirSync(RESULTS, { recursive: true })
writeFileSync(join(RESULTS, 'fleet.json'), JSON.stringify(out, null, 2))
const md = [
  '# Fleet chaos run', '',
  `Generated ${out.generatedAt}, node ${process.version}, \`flock /work/locks/bench.lock npx tsx bench/fleet/run.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}\`. Redis Cluster of 3 masters + 3 replicas (cluster-node-timeout 2 s), ${INSTANCES} ctrserve processes (1 image encoder worker each), loopback image origin. Open-loop load of ${RATE} req/s in total, round robin over the instances in rotation (latency from each request's due time), 19–21 items per request (18 hot, one new title, every 5th request one new image), budget 200 ms. Load average at start ${loadAtStart.map((x) => x.toFixed(1)).join(' / ')}, at end ${out.loadAverage.atEnd.map((x) => x.toFixed(1)).join(' / ')} (shared 2-core machine: absolute latencies are noisy).`, '',
  '| phase | fault | s | requests | 5xx | conn. errors | p99 (ms) | max (ms) | /readyz non-200 | jobs queued / done / failed (neg. cached) / expired / dropped / deferred (outbox) | recovery and notes |',
  '|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|',
  ...results.map((r) => `| ${r.phase} | ${r.fault} | ${r.seconds} | ${r.sent} | ${r.fiveXx} | ${r.connectionErrors} | ${r.latency.p99} | ${r.latency.max} | ${r.readyz.not200} / ${r.readyz.polls} | ${r.jobs.queued} / ${r.jobs.done} / ${r.jobs.failed} / ${r.jobs.expired} / ${r.jobs.dropped} / ${r.jobs.deferred} | ${Object.entries(r.notes).map(([k, v]) => `${k}: ${v === undefined ? 'not reached' : JSON.stringify(v)}`).join('; ')} |`),
  '',
  `Jobs over the run (every process; a killed one with its last scrape): queued ${totals.queued}, done ${totals.done}, failed ${totals.failed}, expired ${totals.expired}, dropped ${totals.dropped}, unknown ${totals.unknown}, deferred to the outbox ${totals.deferred}, deduplicated ${totals.deduplicated}, negative ${totals.negative}, retried ${totals.retried}. Still in the queue after a drain of ${drainMs ?? `>${DRAIN_S * 1000}`} ms (job records in the cluster, every version): ${waiting} ${JSON.stringify(queueEnd.jobsByVersion)}, of which leased ${queueEnd.leased}; negative-cache markers: ${queueEnd.negativeMarkers}. **Lost = queued − done − failed − expired − in queue = ${lost}** (an \`unknown\` enqueue may have been queued: true lost lies in [${lost}, ${lost + totals.unknown}]; a process's jobs settled after its last scrape count as lost here).`, '',
  `Ground truth: ${freshKeys.length} new inputs sent (titles, images, the kill-9 burst); ${embedded} have their vector in the cluster at the end; ${freshKeys.length - embedded} do not. **Lost inputs: ${lostInputs}** (${LOST_DEFINITION}).`, '',
  'Every input without a vector at the end, by what the per-key trace says became of it (each instance logs every key\'s enqueue outcome and every job done at debug; `bench/fleet/trace.ts`), and the phase that sent it:', '',
  '| class | lost | inputs | by sending phase |', '|---|---|---:|---|',
  ...Object.entries(byClass).map(([cls, n]) => `| ${cls} | ${LOST.has(cls as MissingClass) ? 'yes' : 'no'} | ${n} | ${JSON.stringify(byClassAndPhase[cls])} |`),
  ...(missingList.length === 0 ? ['| (none) | | 0 | |'] : []), '',
  'Every new input by its enqueue history in the per-key trace (outcomes in order, repeats collapsed; `deferred → queued`: a try that failed, went unanswered or was not yet on a replica, sent again by the outbox) and the phase that sent it:', '',
  '| enqueue history | inputs | by sending phase |', '|---|---:|---|',
  ...Object.entries(paths).sort((a, b) => sum(b[1]) - sum(a[1])).map(([path, byPhase]) => `| ${path} | ${sum(byPhase)} | ${JSON.stringify(byPhase)} |`), '',
  `Phase starts (s after the run start): ${JSON.stringify(phaseStarts)}; each missing input, its send time, instance and trace: \`bench/results/fleet.json\` (groundTruth.notEmbedded_).`, '',
  `Vectors under a foreign encoder version (scan of every master; a bundle-B vector has values near 100): under A's version computed by B ${foreign.aKeysWithB} of ${foreign.aKeys}; under B's version computed by A ${foreign.bKeysWithA} of ${foreign.bKeys}.`, '',
]
writeFileSync(join(RESULTS, 'fleet.md'), md.join('\n'))
process.stdout.write(md.join('\n'))
process.exit(0)
