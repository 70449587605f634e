import { type ChildProcess, spawn } from 'node:child_process'

// Child processes of a bench run: every one is started here, tracked by pid, and stopped by pid.

export interface Child {
  readonly name: string
  readonly proc: ChildProcess
  readonly pid: number
  /** Last lines of stderr, for error messages. */
  stderrTail(): string
  stop(timeoutMs?: number): Promise<number | null>
}

const live = new Set<Child>()

/** Niceness for every child (BENCH_NICE, set by run-all --nice): negative = ahead of other work on the box. */
function niced(cmd: string, args: readonly string[]): [string, readonly string[]] {
  const n = process.env.BENCH_NICE
  return n && n !== '0' ? ['nice', ['-n', n, cmd, ...args]] : [cmd, args]
}

export function spawnChild(name: string, cmdIn: string, argsIn: readonly string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; onStdout?: (line: string) => void } = {}): Child {
  const [cmd, args] = niced(cmdIn, argsIn)
  const proc = spawn(cmd, args, { env: { ...process.env, ...opts.env }, cwd: opts.cwd ?? process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] })
  if (proc.pid === undefined) throw new Error(`${name}: could not start ${cmd}`)
  const tail: string[] = []
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
    tail.push(d)
    if (tail.length > 40) tail.shift()
  })
  let buf = ''
  proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
    buf += d
    let nl: number
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      opts.onStdout?.(line)
    }
  })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  const child: Child = {
    name, proc, pid: proc.pid,
    stderrTail: () => tail.join('').slice(-4000),
    stop: async (timeoutMs = 15_000) => {
      live.delete(child)
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode
      proc.kill('SIGTERM')
      const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
      const code = await exited
      clearTimeout(t)
      return code
    },
  }
  live.add(child)
  return child
}

/** Stops every child still running (on exit of the orchestrator, errors included). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop(5000)))
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Polls `check` every `everyMs` until it returns true or `timeoutMs` passes. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, everyMs = 200, child?: Child): Promise<void> {
  const end = performance.now() + timeoutMs
  while (performance.now() < end) {
    if (child && child.proc.exitCode !== null) throw new Error(`${what}: ${child.name} exited with ${child.proc.exitCode}\n${child.stderrTail()}`)
    if (await check().catch(() => false)) return
    await sleep(everyMs)
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms${child ? `\n${child.stderrTail()}` : ''}`)
}

export async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) })
  await res.arrayBuffer()
  return res.ok
}
