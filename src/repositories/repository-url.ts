import ipaddr from 'ipaddr.js';
import { ValidationFailed } from '../common/errors.js';
import type { Provider } from './repositories.types.js';

/** Where a repository lives, parsed and normalised from what the user sent. */
export interface RepositoryLocation {
  provider: Provider;
  host: string;
  owner: string;
  name: string;
  cloneUrl: string;
}

export interface UrlPolicy {
  /** Allows plain http, file:// and loopback/private/link-local hosts (local development and tests only). */
  allowInsecure: boolean;
}

const KNOWN_HOSTS: Record<string, Provider> = { 'github.com': 'GITHUB', 'gitlab.com': 'GITLAB' };
const SEGMENT = /^[A-Za-z0-9_.-]+$/;
const BLOCKED_SUFFIXES = [
  '.localhost',
  '.local',
  '.internal',
  '.localdomain',
  '.home.arpa',
  '.intranet',
  '.lan',
];

function invalid(field: string, message: string): ValidationFailed {
  return ValidationFailed.field(field, message);
}

/** Rejects hosts that point inside our own network (SSRF), unless the policy allows it. */
export function checkHostAllowed(host: string, policy: UrlPolicy, field = 'url'): void {
  if (policy.allowInsecure) return;
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (ipaddr.isValid(bare)) {
    const addr = ipaddr.process(bare);
    const range = addr.range();
    if (range !== 'unicast') {
      throw invalid(field, `host ${host} is a ${range} address; only public hosts are allowed`);
    }
    return;
  }
  // Integer or hex spellings of addresses (http://2852039166/) that some resolvers accept.
  if (/^(0x[0-9a-f]+|\d+)(\.(0x[0-9a-f]+|\d+))*$/i.test(bare)) {
    throw invalid(field, `host ${host} is a numeric address; use a DNS name or a dotted public IP address`);
  }
  if (bare === 'localhost' || BLOCKED_SUFFIXES.some((s) => bare.endsWith(s))) {
    throw invalid(field, `host ${host} is a local name; only public hosts are allowed`);
  }
  if (!bare.includes('.')) {
    throw invalid(field, `host ${host} is not a fully qualified domain name`);
  }
}

/** Splits `<owner>/<name>`; a plain git host may also serve `/<name>.git` (owner ''). */
function splitPath(path: string, field: string, allowBareName = false): { owner: string; name: string } {
  const clean = path
    .replace(/^\/+/, '')
    .replace(/\/+$/, '')
    .replace(/\.git$/, '');
  const segments = clean.split('/');
  const tooShort = segments.length < (allowBareName ? 1 : 2);
  if (tooShort || segments.some((s) => !s || !SEGMENT.test(s) || s === '.' || s === '..')) {
    throw invalid(field, 'must name a repository as <owner>/<name> (GitLab: <group>/<subgroup>/<name>)');
  }
  return { owner: segments.slice(0, -1).join('/'), name: segments[segments.length - 1]! };
}

function providerFor(host: string, explicit: Provider | undefined): Provider {
  return explicit ?? KNOWN_HOSTS[host] ?? 'GIT';
}

function normaliseNames(provider: Provider, owner: string, name: string) {
  // GitHub and GitLab paths are case-insensitive: one repository, one row.
  return provider === 'GIT' ? { owner, name } : { owner: owner.toLowerCase(), name: name.toLowerCase() };
}

/** Parses a clone URL (https, ssh, scp-like `git@host:owner/name.git`) and applies the URL policy. */
export function parseRepositoryUrl(
  raw: string,
  policy: UrlPolicy,
  explicitProvider?: Provider,
): RepositoryLocation {
  const field = 'url';
  const input = raw.trim();
  if (input.length > 2048) throw invalid(field, 'is longer than 2048 characters');
  // scp-like syntax has no scheme: user@host:path
  const scp = /^([A-Za-z0-9._-]+)@([A-Za-z0-9.-]+):(?!\/\/)(.+)$/.exec(input);
  if (scp) {
    const host = scp[2]!.toLowerCase();
    checkHostAllowed(host, policy);
    const provider = providerFor(host, explicitProvider);
    const { owner, name } = splitPath(scp[3]!, field, provider === 'GIT');
    return {
      provider,
      host,
      ...normaliseNames(provider, owner, name),
      cloneUrl: `${scp[1]}@${host}:${scp[3]}`,
    };
  }
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw invalid(field, 'is not a valid URL; use https://host/owner/name.git or git@host:owner/name.git');
  }
  const scheme = url.protocol.replace(/:$/, '');
  if (scheme === 'file') {
    if (!policy.allowInsecure) throw invalid(field, 'file:// URLs are not allowed; use https or ssh');
    const { owner, name } = splitPath(url.pathname, field, true);
    return { provider: 'GIT', host: 'localhost', owner, name, cloneUrl: url.href };
  }
  if (scheme !== 'https' && scheme !== 'ssh' && !(scheme === 'http' && policy.allowInsecure)) {
    throw invalid(field, `scheme ${scheme}:// is not allowed; use https:// or ssh://`);
  }
  if (url.search || url.hash) throw invalid(field, 'must not contain a query string or fragment');
  if (scheme !== 'ssh' && (url.username || url.password)) {
    throw invalid(field, 'must not contain credentials; send the token in accessToken or use a connection');
  }
  if (url.password) throw invalid(field, 'must not contain a password; use a connection or accessToken');
  const hostname = url.hostname.toLowerCase();
  if (!hostname) throw invalid(field, 'has no host');
  checkHostAllowed(hostname, policy);
  const host = url.port ? `${hostname}:${url.port}` : hostname;
  const provider = providerFor(hostname, explicitProvider);
  const { owner, name } = splitPath(decodeURIComponent(url.pathname), field, provider === 'GIT');
  url.pathname = url.pathname.replace(/\/+$/, '');
  return { provider, host, ...normaliseNames(provider, owner, name), cloneUrl: url.href };
}

/** Builds the location of a repository given as provider/owner/name (https clone URL on the public host). */
export function locateByName(
  provider: 'GITHUB' | 'GITLAB',
  owner: string,
  name: string,
  host: string | undefined,
  policy: UrlPolicy,
): RepositoryLocation {
  const h = (host ?? (provider === 'GITHUB' ? 'github.com' : 'gitlab.com')).toLowerCase();
  if (!/^[a-z0-9.-]+(:\d{1,5})?$/.test(h))
    throw invalid('host', 'must be a host name, optionally with :port');
  checkHostAllowed(h.replace(/:\d+$/, ''), policy, 'host');
  const { owner: o, name: n } = splitPath(`${owner}/${name}`, 'owner');
  return { provider, host: h, ...normaliseNames(provider, o, n), cloneUrl: `https://${h}/${o}/${n}.git` };
}

/** git check-ref-format rules for a branch name, simplified to what a user can act on. */
export function checkBranchName(name: string, field = 'branches'): void {
  const bad =
    name.length === 0 ||
    name.length > 255 ||
    // eslint-disable-next-line no-control-regex -- git forbids control characters in ref names
    /[\x00-\x20\x7f~^:?*[\\]/.test(name) ||
    name.startsWith('/') ||
    name.startsWith('-') ||
    name.endsWith('/') ||
    name.endsWith('.') ||
    name.endsWith('.lock') ||
    name.includes('..') ||
    name.includes('//') ||
    name.includes('@{') ||
    name === '@' ||
    name.split('/').some((part) => part.startsWith('.'));
  if (bad) throw invalid(field, `"${name}" is not a valid git branch name`);
}
