// Crashes one encoder worker thread of a running server from outside, with no hook in the server:
// the server runs with `--inspect=127.0.0.1:<port>`; over the inspector protocol we attach to its
// worker threads (NodeWorker domain) and make one throw an uncaught exception, which is what a
// crashing encoder thread looks like to the pool ('error' then 'exit').
import { WebSocket } from 'undici'

interface WorkerInfo { sessionId: string; workerInfo: { workerId: string; title: string; url: string } }

/** Throws an uncaught error in the encoder worker of `kind`; resolves with its worker id. */
export async function crashEncoderWorker(inspectPort: number, kind: 'image' | 'text', timeoutMs = 15_000): Promise<string> {
  const targets = await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json() as Array<{ webSocketDebuggerUrl: string }>
  const wsUrl = targets[0]?.webSocketDebuggerUrl
  if (!wsUrl) throw new Error('no inspector target')
  const ws = new WebSocket(wsUrl)
  let nextId = 1
  const replies = new Map<number, (r: unknown) => void>()
  const workers: WorkerInfo[] = []
  const fromWorker = new Map<string, (m: { id?: number; result?: { result?: { value?: unknown } } }) => void>()
  ws.addEventListener('message', (ev) => {
    const msg = JSON.parse(String(ev.data)) as { id?: number; method?: string; params?: Record<string, unknown>; result?: unknown }
    if (msg.id !== undefined) replies.get(msg.id)?.(msg.result)
    else if (msg.method === 'NodeWorker.attachedToWorker') workers.push(msg.params as unknown as WorkerInfo)
    else if (msg.method === 'NodeWorker.receivedMessageFromWorker') {
      const p = msg.params as { sessionId: string; message: string }
      fromWorker.get(p.sessionId)?.(JSON.parse(p.message) as { id?: number })
    }
  })
  await new Promise<void>((resolve, reject) => { ws.addEventListener('open', () => resolve()); ws.addEventListener('error', () => reject(new Error('inspector connection failed'))) })
  const send = (method: string, params: object = {}): Promise<unknown> => new Promise((resolve) => {
    const id = nextId++
    replies.set(id, resolve)
    ws.send(JSON.stringify({ id, method, params }))
  })
  const evalIn = (w: WorkerInfo, expression: string): Promise<unknown> => new Promise((resolve) => {
    fromWorker.set(w.sessionId, (m) => { if (m.id === 1) resolve(m.result?.result?.value) })
    void send('NodeWorker.sendMessageToWorker', {
      sessionId: w.sessionId,
      message: JSON.stringify({ id: 1, method: 'Runtime.evaluate', params: { expression, awaitPromise: true, returnByValue: true, includeCommandLineAPI: true } }),
    })
  })
  const deadline = Date.now() + timeoutMs
  try {
    await send('NodeWorker.enable', { waitForDebuggerOnStart: false })
    while (workers.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    for (const w of [...workers]) {
      const k = await Promise.race([
        evalIn(w, "(() => { try { return require('node:worker_threads').workerData?.kind } catch (e) { return String(e) } })()"),
        new Promise((r) => setTimeout(() => r(undefined), Math.max(0, deadline - Date.now()))),
      ])
      if (process.env.CHAOS_DEBUG) console.error(w.workerInfo, k)
      if (k !== kind) continue
      await evalIn(w, "setTimeout(() => { throw new Error('chaos: encoder worker crash') }, 0); 'armed'")
      return w.workerInfo.workerId
    }
    throw new Error(`no ${kind} encoder worker among ${workers.length} worker threads`)
  } finally {
    ws.close()
  }
}
