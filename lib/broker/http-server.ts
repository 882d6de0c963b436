// The broker's HTTP side: Prometheus metrics and the allocator hierarchy.
import http from 'node:http';

import type { Registry } from 'prom-client';

import { GlobalSessionManager } from '../global-manager';
import { AllocatorNode } from '../hierarchy';
import { formatBytes } from '../hierarchy';

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function renderNode(node: AllocatorNode): string {
  const limit = node.limit === 0 ? 'unlimited' : formatBytes(node.limit);
  const share = node.limit === 0 ? 0 : Math.min(100, Math.round((node.usage / node.limit) * 100));
  const bar = node.limit === 0 ? '' : `<meter min="0" max="100" low="70" high="90" optimum="0" value="${share}"></meter> ${share}%`;
  const children = node.children.length === 0 ? '' : `<ul>${node.children.map(renderNode).join('')}</ul>`;
  return (
    `<li><code>${escapeHtml(node.id)}</code> <small>${node.tag}</small> ` +
    `${formatBytes(node.usage)} / ${limit} ${bar} <small>peak ${formatBytes(node.peak)}, ` +
    `${node.liveBlocks} live blocks here</small>${children}</li>`
  );
}

/** Renders the hierarchy as a small self-contained HTML page. */
export function renderHierarchyPage(root: AllocatorNode, manager: GlobalSessionManager): string {
  const backend = manager.getBackendInfo();
  return [
    '<!doctype html><html lang="en"><head><meta charset="utf-8">',
    '<title>Session memory allocators</title>',
    '<style>body{font-family:sans-serif;margin:2em}ul{list-style:none;border-left:1px solid #ccc;',
    'padding-left:1.2em}li{margin:.3em 0}code{font-weight:bold}small{color:#666}</style></head><body>',
    '<h1>Session memory allocators</h1>',
    `<p>Backend: <b>${escapeHtml(backend.name)}</b> ${escapeHtml(backend.version ?? '')}. `,
    `Global usage ${formatBytes(manager.getGlobalMemoryUsage())} of `,
    `${manager.getGlobalMemoryLimit() === 0 ? 'unlimited' : formatBytes(manager.getGlobalMemoryLimit())}.</p>`,
    `<ul>${renderNode(root)}</ul>`,
    '</body></html>',
  ].join('');
}

/**
 * Creates the HTTP server: GET /metrics (Prometheus text), GET /allocators
 * (HTML, or JSON when the request accepts application/json), GET /healthz.
 */
export function createHttpServer(registry: Registry, manager: GlobalSessionManager): http.Server {
  return http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const send = (status: number, type: string, body: string): void => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      response.end(body);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      send(405, 'text/plain; charset=utf-8', 'method not allowed\n');
      return;
    }

    if (url.pathname === '/metrics') {
      registry.metrics().then(
        (text) => send(200, registry.contentType, text),
        (error: Error) => send(500, 'text/plain; charset=utf-8', `metrics failed: ${error.message}\n`),
      );
      return;
    }
    if (url.pathname === '/allocators') {
      const root = manager.getAllocatorHierarchy();
      const wantsJson = (request.headers.accept ?? '').includes('application/json') || url.searchParams.has('json');
      if (wantsJson) {
        send(200, 'application/json; charset=utf-8', JSON.stringify(root));
      } else {
        send(200, 'text/html; charset=utf-8', renderHierarchyPage(root, manager));
      }
      return;
    }
    if (url.pathname === '/healthz') {
      send(200, 'text/plain; charset=utf-8', 'ok\n');
      return;
    }
    send(404, 'text/plain; charset=utf-8', 'not found: try /metrics or /allocators\n');
  });
}
