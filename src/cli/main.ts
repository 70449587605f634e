import { scoreCommand } from './score.ts'
import { verifyCommand } from './verify.ts'
import { warmCommand } from './warm.ts'

export interface Command {
  readonly name: string
  readonly summary: string
  run(argv: string[]): Promise<number>
}

const commands: Command[] = [warmCommand, scoreCommand, verifyCommand]

function usage(): string {
  return [
    'usage: ctrserve <command> [options]',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(8)} ${c.summary}`),
    '',
    'ctrserve <command> --help shows the options of a command.',
  ].join('\n')
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  const cmd = commands.find((c) => c.name === name)
  if (!cmd) {
    process.stderr.write(`${name && name !== '--help' && name !== '-h' ? `unknown command: ${name}\n\n` : ''}${usage()}\n`)
    return name && name !== '--help' && name !== '-h' ? 2 : 0
  }
  try {
    return await cmd.run(rest)
  } catch (err) {
    process.stderr.write(`ctrserve ${cmd.name}: ${err instanceof Error ? err.message : String(err)}\n`)
    return 1
  }
}
