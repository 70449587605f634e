// The part of autocannon 8's programmatic API the load driver uses (the package ships no types).
declare module 'autocannon' {
  interface RequestParams { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer }
  interface RequestSpec extends RequestParams {
    setupRequest?: (req: RequestParams, context: Record<string, unknown>) => RequestParams
    onResponse?: (status: number, body: string, context: Record<string, unknown>) => void
  }
  interface Options {
    url: string
    connections?: number
    overallRate?: number
    duration?: number
    amount?: number
    timeout?: number
    headers?: Record<string, string>
    requests?: RequestSpec[]
  }
  interface Stat { average: number; mean: number; stddev: number; min: number; max: number; p50: number; p90: number; p97_5: number; p99: number; p99_9: number }
  interface Result {
    duration: number
    errors: number
    timeouts: number
    non2xx: number
    '2xx': number
    latency: Stat
    requests: Stat & { total: number; sent: number }
  }
  function autocannon(opts: Options): Promise<Result>
  export default autocannon
}
