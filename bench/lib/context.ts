import { join } from 'node:path'
import type { Manifest } from '../../src/bundle/manifest.ts'
import type { CeilingResult } from '../ceiling.ts'
import type { ProfileSummary } from '../profile-summary.ts'
import { generateWorkload, writeBodies, type WorkloadSpec, type WorkloadStats } from '../workload.ts'
import type { Child } from './children.ts'
import type { Measurement, Participant } from './measure.ts'
import type { RecoveryResult } from './recovery.ts'
import type { Sample } from './sample.ts'
import type { WarmResult } from './warm.ts'

// What the scenarios share within one run, and the shape of a scenario's saved result.

export interface RunContext {
  readonly sample: Sample
  readonly manifest: Manifest
  readonly redis: { readonly child: Child; readonly url: string }
  readonly origin: { readonly child: Child; readonly base: string; setProfile(name: string): Promise<void> }
  readonly workDir: string
  /** Where servers write their CPU profiles; undefined: servers run without the profiler (the default; --profile turns it on). */
  readonly profileDir: string | undefined
  /** Multiplies every measured duration (e.g. 0.3 for a quick check). */
  readonly scale: number
  /** Redis prefix holding the embeddings of every sample item once `seeded` is true. */
  readonly warmPrefix: string
  seeded: boolean
  log(msg: string): void
}

export interface SweepPoint {
  readonly rate: number
  readonly throughput: number
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly errors: number
  readonly serverCores: number
  readonly driverCores: number
  readonly otherCores: number
}

export interface ScenarioResult {
  readonly id: number
  readonly name: string
  readonly title: string
  readonly method: string
  readonly startedAt: string
  seconds: number
  readonly config: Record<string, unknown>
  workload?: WorkloadStats & { readonly itemsPerRequest: number; readonly zipfS: number; readonly newShare: number }
  warm?: WarmResult
  /** The headline measurement (the one in the table). */
  main?: Measurement
  readonly extra: Record<string, Measurement>
  /** Open-loop rate sweeps by target name (throughput–latency curves). */
  sweeps?: Record<string, SweepPoint[]>
  ceiling?: CeilingResult
  /** Scenario 9: time until the hot set is in L1 after a burst, hit rate over time. */
  recovery?: RecoveryResult
  profile?: ProfileSummary
  /** Scenario 4: background image embedding during the cold start against the raw encoder, same run. */
  embedding?: { rawImagesPerS: number; coldImagesPerS: number; share: number }
  readonly notes: string[]
}

export function newResult(id: number, name: string, title: string, method: string, config: Record<string, unknown>): ScenarioResult {
  return { id, name, title, method, startedAt: new Date().toISOString(), seconds: 0, config, extra: {}, notes: [] }
}

export function seconds(ctx: RunContext, s: number): number {
  return Math.max(3, Math.round(s * ctx.scale))
}

export function makeWorkload(ctx: RunContext, name: string, spec: Omit<WorkloadSpec, 'originBase'>): { file: string; stats: ScenarioResult['workload'] } {
  const { bodies, stats } = generateWorkload(ctx.sample, { ...spec, originBase: ctx.origin.base })
  const file = join(ctx.workDir, `${name}.jsonl`)
  writeBodies(file, bodies)
  return { file, stats: { ...stats, itemsPerRequest: spec.itemsPerRequest, zipfS: spec.zipfS, newShare: spec.newShare } }
}

export function infra(ctx: RunContext): Participant[] {
  return [{ role: 'origin', pid: ctx.origin.child.pid }, { role: 'redis', pid: ctx.redis.child.pid }]
}
