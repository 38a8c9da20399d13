// Browser test of the `rsmoe serve` page in Debian's headless Chromium, driven by playwright-core.
// usage: node serve_page.test.js BASE_URL IMAGE [SCREENSHOT.png]
// Prints "ok NAME" / "FAILED NAME: why" per check and "N passed, N failed, N skipped"; exit 1 on failure.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const base = process.argv[2];
const image = process.argv[3];
const shot = process.argv[4] || path.join(os.tmpdir(), "rsmoe_serve_page.png");
if (!base || !image) { console.error("usage: node serve_page.test.js BASE_URL IMAGE [SCREENSHOT]"); process.exit(2); }

let passed = 0, failed = 0;
function check(name, cond, why) {
  if (cond) { passed++; console.log("ok " + name); }
  else { failed++; console.log("FAILED " + name + (why ? ": " + why : "")); }
}

(async () => {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "rsmoe-chromium-"));
  let ctx = null;
  const pageErrors = [];
  try {
    ctx = await chromium.launchPersistentContext(userDataDir, {
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      viewport: { width: 1200, height: 800 },
    });
    const page = ctx.pages()[0] || await ctx.newPage();
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    const external = [];
    page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) external.push(r.url()); });

    await page.goto(base + "/", { waitUntil: "load", timeout: 30000 });
    check("page_title", (await page.title()).includes("RS-MoE"), await page.title());
    await page.waitForFunction(() => /experts:/.test(document.getElementById("model").textContent), null, { timeout: 15000 });
    check("model_info", /theme/.test(await page.textContent("#model")), await page.textContent("#model"));

    // a file that is not an image is refused by the page itself
    const txt = path.join(userDataDir, "notes.txt");
    fs.writeFileSync(txt, "hello");
    await page.setInputFiles("#file", txt);
    check("refuses_non_image_file", /not an image/.test(await page.textContent("#error")), await page.textContent("#error"));

    // a .png whose bytes are not an image: the server answers 415 and the page shows it
    const fake = path.join(userDataDir, "fake.png");
    fs.writeFileSync(fake, "this is not a png");
    await page.setInputFiles("#file", fake);
    await page.waitForFunction(() => /HTTP 4\d\d/.test(document.getElementById("error").textContent), null, { timeout: 30000 });
    check("server_error_shown", /415/.test(await page.textContent("#error")), await page.textContent("#error"));

    // a real image: preview, caption coloured by aspect, timings
    await page.fill("#maxlen", "12");
    await page.fill("#beams", "2");
    await page.setInputFiles("#file", image);
    await page.waitForSelector('#caption[data-ready="1"]', { timeout: 60000 });
    const prev = await page.$eval("#preview", (img) => ({ w: img.naturalWidth, hidden: img.hidden }));
    check("preview_shown", prev.w > 0 && !prev.hidden, JSON.stringify(prev));
    const spans = await page.$$eval("#caption > *", (els) => els.map((e) => ({
      tag: e.tagName, aspect: e.dataset.aspect, text: e.textContent, color: getComputedStyle(e).color,
    })));
    const names = spans.map((s) => s.aspect);
    check("caption_aspects", ["theme", "objects", "relationships"].every((n) => names.includes(n)), JSON.stringify(names));
    check("caption_only_spans", spans.length > 0 && spans.every((s) => s.tag === "SPAN"), JSON.stringify(spans.map((s) => s.tag)));
    check("caption_text", spans.every((s) => s.text.length > 0), "an empty aspect");
    const colors = new Set(spans.map((s) => s.color));
    check("aspect_colours_distinct", colors.size === new Set(names).size && colors.size >= 3, JSON.stringify([...colors]));
    const legend = await page.$$eval("#legend li", (els) => els.map((e) => e.textContent));
    check("legend_gates", legend.length === 3 && legend.every((t) => /gate 0\.\d{3}/.test(t)), JSON.stringify(legend));
    const timings = await page.$$eval("#timings tr", (rows) => rows.map((r) => r.textContent));
    check("timings_shown", timings.some((t) => /^model\d+\.\d ms$/.test(t)) && timings.some((t) => /^encode/.test(t)), JSON.stringify(timings));

    // a question
    await page.fill("#question", "Is there a river in the image?");
    await page.click("#ask");
    await page.waitForSelector('#answer[data-ready="1"]', { timeout: 60000 });
    const ans = await page.textContent("#answer");
    check("answer_shown", ans.trim().length > 0 && /expert/.test(ans), ans);
    check("no_error_after_answer", (await page.textContent("#error")) === "", await page.textContent("#error"));

    // the brief style: one sentence in the chosen expert's colour
    await page.selectOption("#style", "brief");
    await page.click("#describe");
    await page.waitForSelector('#caption[data-ready="1"]', { timeout: 60000 });
    const brief = await page.$$eval("#caption > span", (els) => els.map((e) => e.dataset.aspect));
    check("brief_one_span", brief.length === 1 && ["theme", "objects", "relationships"].includes(brief[0]), JSON.stringify(brief));
    await page.selectOption("#style", "detailed");
    await page.click("#describe");
    await page.waitForSelector('#caption[data-ready="1"]', { timeout: 60000 });

    // drag and drop: a PNG drawn on a canvas, dropped on the drop zone
    await page.evaluate(async () => {
      const c = document.createElement("canvas"); c.width = 40; c.height = 30;
      const g = c.getContext("2d"); g.fillStyle = "#3a7"; g.fillRect(0, 0, 40, 30);
      const blob = await new Promise((r) => c.toBlob(r, "image/png"));
      const dt = new DataTransfer();
      dt.items.add(new File([blob], "dropped.png", { type: "image/png" }));
      document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    await page.waitForFunction(() => document.getElementById("caption").dataset.ready === "1" &&
      /40 x 30 px/.test(document.getElementById("timings").textContent), null, { timeout: 60000 });
    check("drop_image", (await page.$$("#caption span[data-aspect]")).length === 3, "no coloured caption after a drop");

    check("no_external_requests", external.length === 0, JSON.stringify(external));
    check("no_page_errors", pageErrors.length === 0, JSON.stringify(pageErrors));
    await page.screenshot({ path: shot, fullPage: true });
    console.log("screenshot " + shot);
  } catch (e) {
    check("browser_run", false, String(e && e.stack || e));
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  console.log(passed + " passed, " + failed + " failed, 0 skipped");
  process.exit(failed ? 1 : 0);
})();
