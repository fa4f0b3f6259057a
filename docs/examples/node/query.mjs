#!/usr/bin/env node
// Fetch one record from an Onceonly hub and print the answer as JSON.
// Usage and exit codes: README.md in this directory.

import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { HubClient, loadClientKey, Problem, TransportError, VerificationError } from './onceonly.mjs';

const EXIT = { ok: 0, refused: 1, unreachable: 2, token: 3, usage: 4, unverified: 5 };

const options = {
  hub: { env: 'ONCEONLY_HUB_URL' },
  'client-id': { env: 'ONCEONLY_CLIENT_ID' },
  key: { env: 'ONCEONLY_KEY_FILE' },
  kid: { env: 'ONCEONLY_KID', optional: true },
  item: { env: 'ONCEONLY_ITEM' },
  subject: { env: 'ONCEONLY_SUBJECT' },
  purpose: { env: 'ONCEONLY_PURPOSE' },
  'item-version': { env: 'ONCEONLY_ITEM_VERSION', optional: true },
};

function usage(message) {
  if (message) console.error(`query.mjs: ${message}`);
  const lines = ['usage: node query.mjs --hub URL --client-id ID --key FILE --item ITEM --subject S --purpose P'];
  for (const [name, o] of Object.entries(options)) {
    lines.push(`  --${name.padEnd(12)} or $${o.env}${o.optional ? ' (optional)' : ''}`);
  }
  (message ? console.error : console.log)(lines.join('\n'));
  process.exit(message ? EXIT.usage : EXIT.ok);
}

function printProblem(problem) {
  console.error(`${problem.stage === 'token' ? 'token endpoint' : 'hub'} refused:`);
  console.error(`  type:   ${problem.type}`);
  console.error(`  title:  ${problem.title}`);
  console.error(`  status: ${problem.status}`);
  console.error(`  detail: ${problem.detail}`);
  if (problem.requestId) console.error(`  request id: ${problem.requestId}`);
}

async function main() {
  let values;
  try {
    const flags = Object.fromEntries(Object.keys(options).map((name) => [name, { type: 'string' }]));
    ({ values } = parseArgs({ options: { ...flags, help: { type: 'boolean', short: 'h' } } }));
  } catch (error) {
    usage(error.message);
  }
  if (values.help) usage();
  const config = {};
  for (const [name, o] of Object.entries(options)) {
    config[name] = values[name] ?? process.env[o.env];
    if (!config[name] && !o.optional) usage(`missing --${name} (or $${o.env})`);
  }
  let version;
  if (config['item-version'] !== undefined) {
    version = Number(config['item-version']);
    if (!Number.isInteger(version) || version < 1) usage('--item-version must be an integer ≥ 1');
  }

  let clientKey;
  try {
    clientKey = await loadClientKey(await readFile(config.key, 'utf8'), config.kid || undefined);
  } catch (error) {
    usage(`cannot use the key in ${config.key}: ${error.message}`);
  }

  const client = new HubClient(config.hub, config['client-id'], clientKey);
  try {
    const answer = await client.queryRecord(config.item, config.subject, config.purpose, version);
    if (answer.deprecation) console.error(`warning: ${config.item} is deprecated (since ${answer.deprecation})`);
    console.log(JSON.stringify(answer, null, 2));
    return EXIT.ok;
  } catch (error) {
    if (error instanceof Problem) {
      printProblem(error);
      return error.stage === 'token' ? EXIT.token : EXIT.refused;
    }
    console.error(`query.mjs: ${error.message}`);
    if (error instanceof TransportError) return EXIT.unreachable;
    if (error instanceof VerificationError) return EXIT.unverified;
    throw error;
  }
}

process.exitCode = await main();
