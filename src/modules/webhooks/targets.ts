import dns, { type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * Where a webhook may not send, unless WEBHOOK_ALLOW_PRIVATE: a tenant's URL must not make
 * the server send requests into the operator's own network (SSRF) — loopback, private,
 * link-local (cloud metadata at 169.254.169.254), CGNAT, unspecified, multicast, broadcast
 * and the other special-purpose ranges of the IANA registries, which no public endpoint uses.
 */
const V4: [network: string, prefix: number][] = [
  ['0.0.0.0', 8], // "this network", 0.0.0.0 (reaches the local host on Linux)
  ['10.0.0.0', 8], // private (RFC 1918)
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast (deprecated)
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, 255.255.255.255 broadcast
];

const V6: [network: string, prefix: number][] = [
  ['::', 96], // unspecified ::, loopback ::1, deprecated IPv4-compatible
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard-only
  ['2001::', 32], // Teredo (an obfuscated IPv4 address inside)
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4 (deprecated; an IPv4 address inside)
  ['3fff::', 20], // documentation
  ['fc00::', 7], // unique local (private)
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
];

const blocked = new BlockList();
for (const [network, prefix] of V4) {
  blocked.addSubnet(network, prefix, 'ipv4');
  // the same IPv4 ranges written as IPv6: IPv4-mapped (::ffff:127.0.0.1) and NAT64 (64:ff9b::10.0.0.1)
  blocked.addSubnet(`::ffff:${network}`, 96 + prefix, 'ipv6');
  blocked.addSubnet(`64:ff9b::${network}`, 96 + prefix, 'ipv6');
}
for (const [network, prefix] of V6) blocked.addSubnet(network, prefix, 'ipv6');

export const PRIVATE_SETTING = 'WEBHOOK_ALLOW_PRIVATE';
const WHAT = 'a loopback, private, link-local or reserved address';

/** Whether `address` (an IP address) is in one of the ranges above; anything not an IP address is. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  return blocked.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/**
 * Why the host of a URL (`URL.hostname`, so IPv4 already normalised and IPv6 in brackets)
 * is not a public target, or null. No DNS: a name's addresses can change after it is
 * checked, so names are checked where the connection is made (`publicOnlyLookup`).
 */
export function privateHostReason(hostname: string): string | null {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (isIP(host)) return isPrivateAddress(host) ? `${host} is ${WHAT}` : null;
  const name = host.toLowerCase().replace(/\.$/, '');
  if (name === 'localhost' || name.endsWith('.localhost')) return `${name} is the local host`;
  return null;
}

/** A delivery refused because of where it would connect. */
export class PrivateTargetError extends Error {
  constructor(detail: string) {
    super(`webhook target refused: ${detail} (${PRIVATE_SETTING}=true allows it)`);
    this.name = 'PrivateTargetError';
  }
}

/**
 * A `lookup` for http(s).request that fails when the name resolves to any blocked address.
 * Node calls it for the connection it is about to make and connects to what it returns, so
 * there is no gap between the check and the connection for DNS rebinding to use. (Node
 * does not call it for an IP-literal host: check those with `privateHostReason` first.)
 */
export const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
    if (err) return callback(err, '');
    const bad = addresses.find((a) => isPrivateAddress(a.address));
    if (bad) return callback(new PrivateTargetError(`${hostname} resolves to ${bad.address}, ${WHAT}`), '');
    if (options.all) return callback(null, addresses);
    const first = addresses[0];
    if (!first) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '');
    callback(null, first.address, first.family);
  });
};
