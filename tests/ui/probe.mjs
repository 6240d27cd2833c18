// Drives Debian's headless Chromium through the Dagster UI and prints what the pages show, as JSON.
// Usage: node probe.mjs BASE_URL OUT_DIR ASSET PARTITION_KEY
// Screenshots go to OUT_DIR; the pytest test asserts on the JSON.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, out, asset, partition] = process.argv.slice(2);
const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'bscore-chromium-')), {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1600, height: 1000 },
  args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
         '--disable-gpu', '--no-first-run', '--disable-sync'],
});
const page = context.pages()[0] ?? await context.newPage();
page.setDefaultTimeout(30000);

async function dismissDialogs() {
  const skip = page.getByRole('button', { name: 'Skip' });
  if (await skip.isVisible().catch(() => false)) await skip.click();
}

async function settle(text) {
  await page.getByText(text, { exact: false }).first().waitFor();
  await page.waitForLoadState('networkidle');
  await dismissDialogs();
}

async function text() {
  return page.evaluate(() => document.body.innerText);
}

// Unfold every folded asset group, one at a time: each unfold lays the graph out again.
async function unfoldGroups() {
  for (let i = 0; i < 20; i++) {
    await page.waitForTimeout(500);
    const unfold = page.locator('[aria-label=unfold_more]');
    if (await unfold.count() === 0) return;
    await unfold.first().click();
  }
  throw new Error('asset groups still folded after 20 unfolds');
}

// The global lineage graph, every asset group expanded (the UI remembers it across a reload, which re-fits the view).
async function graph() {
  await page.goto(`${base}/asset-groups`);
  await settle('Global asset lineage');
  await unfoldGroups();
  // More room for the graph: hide the app navigation and the graph's sidebar before the re-fit.
  await page.getByRole('button', { name: 'Hide navigation' }).click();
  await page.locator('button:has([aria-label=panel_show_right])').last().click();
  await page.reload();
  await settle(asset);
  await page.waitForTimeout(1000);
  await dismissDialogs();
  await unfoldGroups();  // a group unfolded while the graph was still laying out can come back folded
  await page.screenshot({ path: join(out, 'asset-graph.png') });
  // Each drawn edge, matched to the asset cards at its two ends by screen position.
  return page.evaluate(() => {
    const cards = [];
    for (const el of document.querySelectorAll('*')) {
      if (el.children.length !== 0 || !/^[a-z_]+$/.test(el.textContent)) continue;
      let card = el;
      while (card && !(card.getBoundingClientRect().height > 60 && card.getBoundingClientRect().width < 400)) card = card.parentElement;
      if (card && card.closest('foreignObject')) cards.push({ name: el.textContent, rect: card.getBoundingClientRect() });
    }
    const near = (x, y, side) => {
      const hits = cards.filter(c => y >= c.rect.top && y <= c.rect.bottom && Math.abs(x - c.rect[side]) < 15);
      hits.sort((a, b) => (a.rect.width * a.rect.height) - (b.rect.width * b.rect.height));
      return hits.length ? hits[0].name : null;
    };
    const edges = [];
    for (const path of document.querySelectorAll('path[stroke="var(--color-lineage-edge)"]')) {
      const m = path.getScreenCTM();
      const at = (len) => { const p = path.getPointAtLength(len); return [m.a * p.x + m.c * p.y + m.e, m.b * p.x + m.d * p.y + m.f]; };
      const [x0, y0] = at(0), [x1, y1] = at(path.getTotalLength());
      edges.push([near(x0, y0, 'right'), near(x1, y1, 'left')]);
    }
    const boxes = [...document.querySelectorAll('foreignObject')].map(f => f.getBoundingClientRect()).filter(r => r.width);
    const box = { x: Math.min(...boxes.map(r => r.left)) - 30, y: Math.min(...boxes.map(r => r.top)) - 30 };
    box.width = Math.max(...boxes.map(r => r.right)) + 30 - box.x;
    box.height = Math.max(...boxes.map(r => r.bottom)) + 30 - box.y;
    return { assets: [...new Set(cards.map(c => c.name))].sort(), edges, box };
  }).then(async (found) => {
    await page.screenshot({ path: join(out, 'asset-lineage.png'), clip: found.box });  // the graph alone, for the README
    return found;
  });
}

async function partitions() {
  await page.goto(`${base}/assets/${asset}?view=partitions`);
  await settle('Materialized (');
  await page.screenshot({ path: join(out, 'partitions.png') });
  const listed = await text();
  await page.goto(`${base}/assets/${asset}?view=partitions&partition=${encodeURIComponent(partition)}`);
  await settle('rows_scored');
  await page.screenshot({ path: join(out, 'partition.png') });
  const details = await text();
  await page.locator('tr', { has: page.getByText('plot', { exact: true }) }).getByText('[Show Markdown]').click();
  const plot = page.locator('img[src^="data:image/png;base64,"]');
  await plot.first().waitFor();
  await page.getByRole('button', { name: 'Close' }).waitFor();
  await page.waitForTimeout(800);  // the dialog fades in
  await page.screenshot({ path: join(out, 'partition-plot.png') });
  const plotted = await plot.evaluateAll(imgs => imgs.map(img => ({ alt: img.alt, width: img.naturalWidth })));
  return { listed, partition: details, plotted };
}

async function checks() {
  await page.goto(`${base}/assets/${asset}?view=checks`);
  await settle('anomaly_rate');
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(out, 'checks.png') });
  return text();
}

try {
  const result = { graph: await graph(), partitions: await partitions(), checks: await checks() };
  console.log(JSON.stringify(result));
} finally {
  await context.close();
}
