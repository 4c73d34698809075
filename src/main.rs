use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match tollbooth::cli::Cli::parse().run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
