import fs from 'node:fs';
import test from 'ava';
import { DOC_FILE, renderConfigDocs } from '../../../scripts/gen-config-docs.js';
import { schemaEntries } from '../../../daemon/config.js';

test('docs/config.md is generated from the schema and up to date (npm run docs:config)', (t) => {
  const current = fs.readFileSync(DOC_FILE, 'utf8');
  t.is(current, renderConfigDocs(), 'docs/config.md is stale: run npm run docs:config');
});

test('docs/config.md names every key and environment variable', (t) => {
  const text = fs.readFileSync(DOC_FILE, 'utf8');
  for (const { key, item } of schemaEntries()) {
    t.true(text.includes(`\`${key}\``), key);
    if (item.env) t.true(text.includes(`\`${item.env}\``), item.env);
  }
});
