// The allocator hierarchy as data and as a readable text tree.
import { MemoryTagName, memoryTagName } from './codes';
import { NativeHierarchyNode } from './native';

export interface AllocatorNode {
  id: string;
  tag: MemoryTagName;
  usage: number;
  peak: number;
  /** 0 = unlimited */
  limit: number;
  /** Bytes allocated from this node itself, not from its children. */
  selfUsage: number;
  liveBlocks: number;
  children: AllocatorNode[];
}

export function toAllocatorNode(node: NativeHierarchyNode): AllocatorNode {
  return {
    id: node.id,
    tag: memoryTagName(node.tag) as MemoryTagName,
    usage: node.usage,
    peak: node.peak,
    limit: node.limit,
    selfUsage: node.selfUsage,
    liveBlocks: node.liveBlocks,
    children: node.children.map(toAllocatorNode),
  };
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Formats a byte count with binary units: 1536 → "1.5 KiB". */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

function describe(node: AllocatorNode): string {
  // JSON quoting keeps control characters and newlines in ids from breaking the tree.
  const id = /^[\x21-\x7e]+$/.test(node.id) ? node.id : JSON.stringify(node.id);
  const limit = node.limit === 0 ? 'unlimited' : formatBytes(node.limit);
  const share = node.limit === 0 ? '' : ` (${Math.round((node.usage / node.limit) * 100)}%)`;
  return `${id} [${node.tag}] ${formatBytes(node.usage)} / ${limit}${share}, peak ${formatBytes(node.peak)}`;
}

/** Formats the tree, one node a line, with usage against limit per node. */
export function formatAllocatorNode(root: AllocatorNode): string {
  const lines: string[] = [describe(root)];
  const walk = (node: AllocatorNode, prefix: string): void => {
    node.children.forEach((child, index) => {
      const last = index === node.children.length - 1;
      lines.push(`${prefix}${last ? '└─ ' : '├─ '}${describe(child)}`);
      walk(child, `${prefix}${last ? '   ' : '│  '}`);
    });
  };
  walk(root, '');
  return lines.join('\n');
}
