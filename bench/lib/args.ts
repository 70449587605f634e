// Minimal `--name value` / `--flag` parser for the bench scripts (no dependency for a few flags).

export type Args = ReadonlyMap<string, string>

export function parseArgs(argv: readonly string[]): Args {
  const out = new Map<string, string>()
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)}; flags look like --name value`)
    const eq = a.indexOf('=')
    if (eq > 0) { out.set(a.slice(2, eq), a.slice(eq + 1)); continue }
    const next = argv[i + 1]
    if (next === undefined || next.startsWith('--')) out.set(a.slice(2), 'true')
    else { out.set(a.slice(2), next); i++ }
  }
  return out
}

export function num(args: Args, name: string, dflt: number): number {
  const v = args.get(name)
  if (v === undefined) return dflt
  const n = Number(v)
  if (!Number.isFinite(n)) throw new Error(`--${name} must be a number (got ${JSON.stringify(v)})`)
  return n
}

export function str(args: Args, name: string, dflt?: string): string {
  const v = args.get(name) ?? dflt
  if (v === undefined) throw new Error(`--${name} is required`)
  return v
}
