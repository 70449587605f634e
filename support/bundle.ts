import { resolve } from 'node:path'

/** The committed reference bundle every test runs on (never a stand-in). */
export const BUNDLE_DIR = resolve(import.meta.dirname, '../models/ctr-synth')
export const SAMPLE_DIR = resolve(import.meta.dirname, '../fixtures/sample')
