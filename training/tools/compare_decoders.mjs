// Decode every JPEG in a folder with sharp (libvips) the way the server does and write the raw
// RGB pixels as JSON ({file: {w, h, c, b64}}), for tools/compare_decoders.py to diff against PIL.
// Usage (from the repo root): node training/tools/compare_decoders.mjs <dir> <out.json>
import { createRequire } from 'node:module';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';

const require = createRequire(new URL('../../package.json', import.meta.url));
const sharp = require('sharp');
const [dir, outFile] = process.argv.slice(2);
const out = {};
for (const f of readdirSync(dir).filter((n) => n.endsWith('.jpg'))) {
  const { data, info } = await sharp(readFileSync(`${dir}/${f}`))
    .rotate().flatten({ background: '#ffffff' }).toColourspace('srgb').removeAlpha()
    .raw().toBuffer({ resolveWithObject: true });
  out[f] = { w: info.width, h: info.height, c: info.channels, b64: data.toString('base64') };
}
writeFileSync(outFile, JSON.stringify(out));
console.log(JSON.stringify({ images: Object.keys(out).length, vips: sharp.versions.vips, sharp: sharp.versions.sharp }));
