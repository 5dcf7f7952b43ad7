// Screenshots of console pages, for looking at what was built:
//   node end2end/screenshot.mjs http://127.0.0.1:3000/admin out.png [light|dark]
// With SALVAGE_EMAIL and SALVAGE_PASSWORD set, it signs in first.
import { chromium } from "@playwright/test";

const [url, out, scheme = "light"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 720 }, colorScheme: scheme });
if (process.env.SALVAGE_EMAIL) {
  await page.goto(new URL("/admin/login", url).toString());
  await page.getByLabel("Email").fill(process.env.SALVAGE_EMAIL);
  await page.getByLabel("Password").fill(process.env.SALVAGE_PASSWORD ?? "");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("signed-in-as").waitFor();
}
await page.goto(url, { waitUntil: "networkidle" });
await page.screenshot({ path: out, fullPage: true });
await browser.close();
