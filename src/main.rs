fn main() {
    println!("bouncewatch");
}
