//! `/admin/settings/users`: list, add, change role, disable. Admins only.

use leptos::prelude::*;
use leptos_meta::Title;

use super::api::{list_users, AddUser, SetUserDisabled, SetUserRole};
use crate::auth::viewer::IfAllowed;
use crate::auth::Permission;
use crate::auth::{Role, UserRow};
use crate::components::ReasonField;
use crate::components::{
    action_error, Badge, Banner, Column, DataTable, ErrorBanner, PageHeader, Tone,
};
use crate::format::format_utc;

/// `/admin/settings/users`.
#[component]
pub fn UsersPage() -> AnyView {
    let add = ServerAction::<AddUser>::new();
    let set_role = ServerAction::<SetUserRole>::new();
    let set_disabled = ServerAction::<SetUserDisabled>::new();
    let users = Resource::new(
        move || {
            (
                add.version().get(),
                set_role.version().get(),
                set_disabled.version().get(),
            )
        },
        |_| list_users(),
    );
    let add_value = add.value();
    view! {
        <Title text="Users" />
        <PageHeader title="Users" subtitle="Who may use the console, and with which role. Every change is recorded in the history." />
        <Transition fallback=|| view! { <p class="muted" role="status">"Loading users…"</p> }>
            {move || Suspend::new(async move {
                match users.await {
                    Ok(users) => view! { <UserTable users set_role set_disabled /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        {action_error(set_role.value())}
        {action_error(set_disabled.value())}
        <IfAllowed permission=Permission::ManageUsers>
        <section class="panel form-panel wide">
            <h2>"Add a user"</h2>
            <ActionForm action=add attr:class="form-row" attr:aria-label="Add a user">
                <label class="field">
                    <span>"Email"</span>
                    <input type="email" name="email" required />
                </label>
                <label class="field">
                    <span>"Role"</span>
                    <select name="role">
                        {Role::ALL.iter().map(|r| view! { <option value=r.as_str()>{r.as_str()}</option> }).collect_view()}
                    </select>
                </label>
                <ReasonField optional=true />
                <button type="submit" class="btn btn-primary">"Add user"</button>
            </ActionForm>
            {action_error(add_value)}
            {move || match add_value.get() {
                Some(Ok(added)) => Some(view! {
                    <Banner tone=Tone::Ok test_id="temporary-password">
                        "Added " <strong>{added.email}</strong> ". Temporary password, shown only now: "
                        <code class="secret">{added.temporary_password.reveal().to_owned()}</code>
                        ". They choose their own at first sign-in."
                    </Banner>
                }),
                _ => None,
            }}
        </section>
        </IfAllowed>
    }
    .into_any()
}

#[component]
fn UserTable(
    users: Vec<UserRow>,
    set_role: ServerAction<SetUserRole>,
    set_disabled: ServerAction<SetUserDisabled>,
) -> AnyView {
    view! {
        <DataTable
            columns=vec![
                Column::text("Email"),
                Column::text("Role"),
                Column::text("Status"),
                Column::text("Last sign-in"),
                Column::text("Added"),
                Column::text("Change"),
            ]
        >
            {users.into_iter().map(|user| {
                let status = if user.disabled {
                    view! { <Badge tone=Tone::Error label="disabled" /> }.into_any()
                } else if user.must_change_password {
                    view! { <Badge tone=Tone::Warn label="temporary password" /> }.into_any()
                } else {
                    view! { <Badge tone=Tone::Ok label="active" /> }.into_any()
                };
                let email = user.email.clone();
                let toggle_label = if user.disabled { "Enable" } else { "Disable" };
                view! {
                    <tr>
                        <td>{user.email.clone()}</td>
                        <td>{user.role.as_str()}</td>
                        <td>{status}</td>
                        <td class="nowrap">{user.last_login_at.map(format_utc).unwrap_or_else(|| "never".into())}</td>
                        <td class="nowrap">{format_utc(user.created_at)}</td>
                        <td>
                            <div class="row-actions">
                                <ActionForm action=set_role attr:class="inline-form">
                                    <input type="hidden" name="user_id" value=user.id.to_string() />
                                    <input type="hidden" name="reason" value="" />
                                    <label class="visually-hidden" for=format!("role-{}", user.id)>{format!("Role for {}", user.email)}</label>
                                    <select name="role" id=format!("role-{}", user.id)>
                                        {Role::ALL.iter().map(|r| view! { <option value=r.as_str() selected=*r == user.role>{r.as_str()}</option> }).collect_view()}
                                    </select>
                                    <button type="submit" class="btn btn-small">"Set role"<span class="visually-hidden">{format!(" of {}", user.email)}</span></button>
                                </ActionForm>
                                <ActionForm action=set_disabled attr:class="inline-form">
                                    <input type="hidden" name="user_id" value=user.id.to_string() />
                                    <input type="hidden" name="disabled" value=(!user.disabled).to_string() />
                                    <input type="hidden" name="reason" value="" />
                                    <button type="submit" class=if user.disabled { "btn btn-small" } else { "btn btn-small btn-danger" }>
                                        {toggle_label}<span class="visually-hidden">{format!(" {email}")}</span>
                                    </button>
                                </ActionForm>
                            </div>
                        </td>
                    </tr>
                }
            }).collect_view()}
        </DataTable>
    }
    .into_any()
}
