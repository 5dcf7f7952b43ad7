// Finders, actions and checks shared by the browser tests, plus a way to start a second
// Salvage whose ClickHouse link a test can cut.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { appendFileSync } from "node:fs";
import net from "node:net";
import { expect, type Page } from "@playwright/test";

/** The row of a store in the overview's table. */
export function storeRow(page: Page, store: "PostgreSQL" | "ClickHouse") {
  return page.getByRole("row").filter({ has: page.getByRole("rowheader", { name: store, exact: true }) });
}

/** The summary line above the stores table. */
export function storesSummary(page: Page) {
  return page.getByTestId("stores-summary");
}

/** Expects the overview to show both stores healthy. */
export async function expectAllStoresHealthy(page: Page) {
  await expect(storesSummary(page)).toContainText("All stores healthy.");
  await expect(storeRow(page, "PostgreSQL")).toContainText("Healthy");
  await expect(storeRow(page, "ClickHouse")).toContainText("Healthy");
}

/** A TCP link in front of the real ClickHouse that a test can cut and restore. */
export class FaultyLink {
  private up = true;
  private sockets = new Set<net.Socket>();
  private server: net.Server;
  port = 0;

  constructor(private target: { host: string; port: number }) {
    this.server = net.createServer((inbound) => {
      if (!this.up) {
        inbound.destroy();
        return;
      }
      const outbound = net.connect(this.target.port, this.target.host);
      for (const socket of [inbound, outbound]) {
        this.sockets.add(socket);
        socket.on("close", () => this.sockets.delete(socket));
        socket.on("error", () => socket.destroy());
      }
      inbound.pipe(outbound).pipe(inbound);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  cut() {
    this.up = false;
    for (const socket of this.sockets) socket.destroy();
  }

  restore() {
    this.up = true;
  }

  async close() {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** Starts the same Salvage binary with some settings replaced; resolves once it answers. */
export async function startSalvage(env: Record<string, string>): Promise<{ url: string; stop: () => void }> {
  const bin = process.env.SALVAGE_BIN;
  if (!bin) throw new Error("SALVAGE_BIN is not set: run the browser tests through scripts/e2e.sh");
  const child: ChildProcess = spawn(bin, ["serve"], {
    env: { ...process.env, ...env },
    stdio: "ignore",
    cwd: "..",
  });
  const url = `http://${env.SALVAGE_ADDR}`;
  for (let i = 0; i < 100; i++) {
    try {
      const response = await fetch(`${url}/health/deep`);
      if (response.ok) return { url, stop: () => child.kill("SIGTERM") };
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`Salvage did not start at ${url}`);
}

export type Role = "operator" | "manager" | "admin";

/** The e2e account of `role` (created by scripts/e2e.sh through `salvage user add`). */
export function account(role: Role) {
  const password = process.env.E2E_PASSWORD;
  if (!password) throw new Error("E2E_PASSWORD is not set: run the browser tests through scripts/e2e.sh");
  return { email: `${role}@e2e.test`, password };
}

/** Signs in through the form and waits for the console (or `next`) to load. */
export async function signIn(page: Page, role: Role, base = "") {
  const { email, password } = account(role);
  if (!page.url().includes("/admin/login")) await page.goto(`${base}/admin/login`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("signed-in-as")).toContainText(email);
}

/** Whether the page shown was served without the client (plain HTML, `WITHOUT_CLIENT` in
 * app/src/lib.rs): its forms post plainly and nothing hydrates. */
export async function servedWithoutClient(page: Page): Promise<boolean> {
  return !(await page.content()).includes("/pkg/salvage.wasm");
}

/** Loads `path` and waits until the app has hydrated, so a click is handled by the app
 * and not sent as the plain HTML form (which reloads the page under the test). A page
 * served without the client has nothing to wait for: its forms are plain forms. */
export async function open(page: Page, path: string) {
  await page.goto(path);
  if (await servedWithoutClient(page)) return;
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
}

/** Calls `/cron/<job>` with the run's cron secret, as an outside scheduler would; returns
 * the HTTP status (the job has finished when it answers). */
export function cron(baseURL: string, job: string): number {
  const status = execFileSync("curl", [
    "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
    "-H", `Authorization: Bearer ${process.env.E2E_CRON_SECRET ?? ""}`,
    `${baseURL}/cron/${job}`,
  ]);
  return Number(status.toString());
}

/** The side navigation. */
export function sideNav(page: Page) {
  return page.getByRole("navigation", { name: "Console" });
}

/** A title unique to this run, so tests never see each other's data. */
export function unique(prefix: string) {
  return `${prefix} ${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/** Notes a secret the console showed, so that `scripts/e2e.sh` can check afterwards that
 * it never reached the server's log. */
export function rememberSecret(secret: string | null) {
  expect(secret, "a secret to remember").toBeTruthy();
  const file = process.env.E2E_SECRETS_FILE;
  if (file) appendFileSync(file, `${secret}\n`);
}
