import type { FastifyServerOptions } from 'fastify'
import type { Config } from './config.ts'

/** Fastify settings shared by the server and the tests: strict Ajv (no coercion), body limit, redaction. */
export function serverOptions(config: Config): FastifyServerOptions {
  return {
    logger: { level: config.LOG_LEVEL, redact: ['req.headers.authorization'] },
    bodyLimit: 8 * 1024 * 1024,
    // allowMatchingProperties: known field names are also matched by the field-name length pattern
    // (predict-schema.ts FIELD_NAME); both schemas apply, which is what is meant.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false, allowMatchingProperties: true } },
    return503OnClosing: true,
    // The runtime plugin hashes the bundle and starts ONNX sessions and encoder threads: past
    // fastify's default 10 s on a busy 2-core machine, which made the server exit at start.
    pluginTimeout: 120_000,
  }
}
