//! `rmqadmin`: mqadmin's sub-commands for our cluster. See `rmqadmin --help`.

fn main() {
    std::process::exit(client::admin::main_with_args(std::env::args_os()));
}
