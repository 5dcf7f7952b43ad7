import { chromium } from "@playwright/test";
const base = process.argv[2];
const pages = process.argv.slice(3);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox","--disable-gpu"] });
const page = await browser.newPage();
let errors = [];
page.on("console", (m) => { if (m.type() === "error") errors.push(m.text().split("\n")[0]); });
page.on("pageerror", (e) => errors.push("exception " + e.message));
await page.goto(base + "/admin/login");
await page.getByLabel("Email").fill(process.env.SALVAGE_EMAIL);
await page.getByLabel("Password").fill(process.env.SALVAGE_PASSWORD);
await page.getByRole("button", { name: "Sign in" }).click();
await page.getByTestId("signed-in-as").waitFor();
console.log("after sign-in:", page.url(), errors.length);
for (const p of pages) {
  errors = [];
  await page.goto(base + p, { waitUntil: "networkidle" });
  console.log(p, errors.length ? errors.slice(0, 2) : "ok");
}
await browser.close();
