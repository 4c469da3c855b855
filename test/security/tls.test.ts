/**
 * FAULTS 30, TLS to the broker: certificates from a throwaway CA made here with openssl, two
 * extra RabbitMQ nodes with TLS listeners (one serving a good certificate, one an expired
 * one). A verified connection works, from the library (hosts form and amqps URL), postaged and
 * the CLI; a wrong CA, a wrong host name and an expired certificate are refused with a clear
 * error; a TLS setting never falls back to plaintext; EXTERNAL (certificate) authentication.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { Connection, PostageError, type DaemonStatus } from 'postage';
import { postage } from '../helpers/postage-cli.js';
import { startRabbitNodes, stopRabbitNodes, type RabbitNode } from '../helpers/rabbit-nodes.js';
import { startDaemon, tempDir } from '../helpers/spawn.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postage-tls-'));
fs.chmodSync(dir, 0o755); // the rabbitmq user reads the node's certificates from here
const f = (name: string): string => path.join(dir, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A CA, a server certificate for `localhost` only, a client certificate, another CA, an expired server certificate. */
function makeCertificates(): void {
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '3', '-subj', '/CN=postage-test-ca');
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other-ca.key', '-out', 'other-ca.pem', '-days', '3', '-subj', '/CN=someone-else-ca');
  const leaf = (name: string, cn: string, ext: string): void => {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    fs.writeFileSync(f(`${name}.ext`), ext);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '3', '-extfile', `${name}.ext`);
  };
  leaf('server', 'localhost', 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'postage-client', 'extendedKeyUsage=clientAuth\n');
  // Expired: `openssl ca` can set the validity dates in the past.
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'expired.key', '-out', 'expired.csr', '-subj', '/CN=localhost');
  fs.writeFileSync(f('index.txt'), '');
  fs.writeFileSync(f('serial'), '1000\n');
  fs.writeFileSync(
    f('ca.cnf'),
    '[ca]\ndefault_ca = d\n[d]\ndir = .\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = p\ncopy_extensions = copy\nx509_extensions = e\n[p]\ncommonName = supplied\n[e]\nsubjectAltName = DNS:localhost\n',
  );
  openssl('ca', '-batch', '-config', 'ca.cnf', '-cert', 'ca.pem', '-keyfile', 'ca.key', '-in', 'expired.csr', '-out', 'expired.pem', '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-notext');
  for (const name of fs.readdirSync(dir)) fs.chmodSync(f(name), 0o644);
}

const tlsConfig = (port: number, cert: string): string[] => [
  `listeners.ssl.default = 127.0.0.1:${port}`,
  `ssl_options.cacertfile = ${f('ca.pem')}`,
  `ssl_options.certfile = ${f(`${cert}.pem`)}`,
  `ssl_options.keyfile = ${f(`${cert}.key`)}`,
  'ssl_options.verify = verify_peer',
  'ssl_options.fail_if_no_peer_cert = false',
  'auth_mechanisms.1 = PLAIN',
  'auth_mechanisms.2 = AMQPLAIN',
  'auth_mechanisms.3 = EXTERNAL',
  'ssl_cert_login_from = common_name',
];

const TLS_PORT = 5720;
const EXPIRED_PORT = 5721;
let nodes: RabbitNode[] = [];

test.before(async () => {
  makeCertificates();
  nodes = await startRabbitNodes({ log: () => undefined }, [
    { id: 20, extraConfig: tlsConfig(TLS_PORT, 'server'), plugins: ['rabbitmq_auth_mechanism_ssl'] },
    { id: 21, extraConfig: tlsConfig(EXPIRED_PORT, 'expired') },
  ]);
  const good = nodes[0]!;
  // The user EXTERNAL authentication maps the client certificate's CN to.
  await good.ctl('add_user', 'postage-client', `unused-${Math.random()}`);
  await good.ctl('set_permissions', '-p', '/', 'postage-client', '.*', '.*', '.*');
});

test.after.always(async () => {
  await stopRabbitNodes(nodes);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function connect(options: ConstructorParameters<typeof Connection>[0]): Promise<{ ok: true; connection: Connection } | { ok: false; error: PostageError }> {
  const connection = new Connection({ env: {}, connectTimeout: 10_000, ...options });
  try {
    await connection.ready();
    return { ok: true, connection };
  } catch (err) {
    await connection.close();
    return { ok: false, error: err as PostageError };
  }
}

test.serial('a verified connection: the hosts form with the CA, and an amqps URL', async (t) => {
  const byHost = await connect({ hosts: [`localhost:${TLS_PORT}`], tls: { ca: f('ca.pem') } });
  t.true(byHost.ok, byHost.ok ? '' : byHost.error.message);
  if (byHost.ok) {
    t.regex(byHost.connection.displayUrl, new RegExp(`^amqps://guest@localhost:${TLS_PORT}/`));
    await byHost.connection.close();
  }
  const byUrl = await connect({ url: `amqps://guest:guest@localhost:${TLS_PORT}/`, tls: { ca: f('ca.pem') } });
  t.true(byUrl.ok, byUrl.ok ? '' : byUrl.error.message);
  if (byUrl.ok) await byUrl.connection.close();
});

test.serial('refused, clearly: a wrong CA, a wrong host name, an expired certificate', async (t) => {
  const cases = [
    { what: 'wrong CA', options: { hosts: [`localhost:${TLS_PORT}`], tls: { ca: f('other-ca.pem') } }, why: /TLS refused, not connected.*(self-signed|unable to verify|certificate)/i },
    { what: 'wrong host name', options: { hosts: [`localhost:${TLS_PORT}`], tls: { ca: f('ca.pem'), servername: 'rabbit.example.com' } }, why: /TLS refused, not connected.*(altnames|does not match|ERR_TLS_CERT_ALTNAME_INVALID)/i },
    { what: 'expired certificate', options: { hosts: [`localhost:${EXPIRED_PORT}`], tls: { ca: f('ca.pem') } }, why: /TLS refused, not connected.*(expired|CERT_HAS_EXPIRED)/i },
  ];
  for (const c of cases) {
    const r = await connect(c.options);
    t.false(r.ok, c.what);
    if (!r.ok) {
      t.is(r.error.code, 'POSTAGE_ERR_BROKER_UNREACHABLE', c.what);
      t.regex(r.error.message, c.why, c.what);
      t.log(`${c.what}: ${r.error.message}`);
    }
  }
});

test.serial('never plaintext: TLS asked of a plaintext port fails, and no plaintext connection is made', async (t) => {
  const node = nodes[0]!;
  const before = (await node.ctl('list_connections', 'ssl', '--formatter', 'json')).trim();
  const r = await connect({ hosts: [`localhost:${node.port}`], tls: { ca: f('ca.pem') } });
  t.false(r.ok);
  if (!r.ok) t.regex(r.error.message, /TLS refused, not connected|EPROTO|wrong version|socket disconnected/i);
  const after = (await node.ctl('list_connections', 'ssl', '--formatter', 'json')).trim();
  t.is(after, before, 'the node saw no new connection');
});

test.serial('EXTERNAL authentication with the client certificate', async (t) => {
  const r = await connect({ hosts: [`localhost:${TLS_PORT}`], tls: { ca: f('ca.pem'), cert: f('client.pem'), key: f('client.key'), external: true } });
  t.true(r.ok, r.ok ? '' : r.error.message);
  if (!r.ok) return;
  t.regex(r.connection.displayUrl, /^amqps:\/\/localhost:/, 'no user shown: the certificate is the credential');
  const users = await nodes[0]!.ctl('list_connections', 'user', 'ssl', '--formatter', 'json');
  t.true((JSON.parse(users) as Array<{ user: string; ssl: boolean }>).some((c) => c.user === 'postage-client' && c.ssl), users);
  await r.connection.close();
});

test.serial('postaged and the CLI over TLS from their configuration (broker.tls)', async (t) => {
  const config = path.join(tempDir(t, 'postaged-tls-'), 'postaged.json');
  fs.writeFileSync(config, JSON.stringify({ broker: { hosts: [`localhost:${TLS_PORT}`], tls: { enabled: true, ca: [f('ca.pem')] } } }));
  const daemon = await startDaemon(t, { url: '', args: ['--plugins', tempDir(t), '--config', config, '--name', 'tlsd'], env: { POSTAGE_URL: '' } });
  const cli = await postage('', ['status', 'tlsd', '--config', config, '--json'], { env: { POSTAGE_URL: '' } });
  t.is(cli.code, 0, cli.stderr);
  const [reply] = JSON.parse(cli.stdout) as Array<{ value: DaemonStatus }>;
  t.regex(reply?.value.broker?.url ?? '', new RegExp(`^amqps://guest@localhost:${TLS_PORT}/`));
  t.is(reply?.value.pid, daemon.pid);
  const wrong = path.join(path.dirname(config), 'wrong.json');
  fs.writeFileSync(wrong, JSON.stringify({ broker: { hosts: [`localhost:${TLS_PORT}`], tls: { enabled: true, ca: [f('other-ca.pem')] } } }));
  const refused = await postage('', ['ping', '--config', wrong], { env: { POSTAGE_URL: '' } });
  t.is(refused.code, 69);
  t.regex(refused.stderr, /TLS refused, not connected/);
});
